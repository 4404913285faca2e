#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include ROUTER
#include "topk_new.h"
#include "topk_new2.h"
#include "topk_avx2.h"
#include "topk_512.h"
#include "topk_512b.h"
#include "topk_bit.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static uint64_t s=1; static float u(void){s=s*6364136223846793005ull+1442695040888963407ull;return (float)((s>>40)*(1.0/16777216.0));}
int main(int argc,char**argv){ init_perm();
  enum{T=32,E=128,K=8,N=64};
  static float L[N][T*E]; static int32_t ids[T*K]; static float w[T*K];
  for(int n=0;n<N;n++)for(int i=0;i<T*E;i++)L[n][i]=(u()-0.5f)*8;
  moert_router_cfg cfg; memset(&cfg,0,sizeof cfg); cfg.kind=MOERT_ROUTER_SOFTMAX_TOPK; cfg.num_experts=E; cfg.top_k=K; cfg.renormalize=1; cfg.scale=1.0f;
  float vals[E]; int32_t idx[E]; float tmp[E];
  for(int rep=0;rep<3;rep++){
  double best=1e18,bt=1e18,bs=1e18;
  for(int it=0;it<4000;it++){
    float*l=L[it%N]; if(FRESH){for(int i=0;i<T*E;i++)l[i]=(u()-0.5f)*8;}
    double a=now(); moert_route_host(&cfg,l,MOERT_DTYPE_F32,E,T,NULL,ids,w); double b=now();
    if(b-a<best)best=b-a;
    a=now(); for(int t=0;t<T;t++) TOPK(l+t*E,E,K,vals,ids+t*K); b=now(); if(b-a<bt)bt=b-a;
    a=now(); for(int t=0;t<T;t++) softmax_weights(&cfg,l+t*E,vals,w+t*K,tmp); b=now(); if(b-a<bs)bs=b-a;
  }
  { int bad=0; for(int n=0;n<N;n++) for(int t=0;t<T;t++){ float v1[E],v2[E]; int32_t i1[E],i2[E]; topk_row_scan(L[n]+t*E,E,K,v1,i1); TOPK(L[n]+t*E,E,K,v2,i2); for(int j=0;j<K;j++) bad += i1[j]!=i2[j] || v1[j]!=v2[j]; } if(bad) printf("MISMATCH %d\n",bad);}
  printf("route_host %.0f ns, topk %.0f ns, softmax %.0f ns\n",best,bt,bs);}
  return 0;
}

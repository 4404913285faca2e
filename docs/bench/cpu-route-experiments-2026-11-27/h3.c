#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include ROUTER
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static uint64_t s=1; static float u(void){s=s*6364136223846793005ull+1442695040888963407ull;return (float)((s>>40)*(1.0/16777216.0));}
int main(int argc,char**argv){
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
    a=now(); for(int t=0;t<T;t++) topk_row(l+t*E,E,K,vals,ids+t*K); b=now(); if(b-a<bt)bt=b-a;
    a=now(); for(int t=0;t<T;t++) softmax_weights(&cfg,l+t*E,vals,w+t*K,tmp); b=now(); if(b-a<bs)bs=b-a;
  }
  printf("route_host %.0f ns, topk %.0f ns, softmax %.0f ns\n",best,bt,bs);}
  return 0;
}

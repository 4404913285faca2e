#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include "internal.h"
typedef moert_status (*fn)(const moert_router_cfg *, const void *, moert_dtype, uint64_t, uint32_t, const float *, int32_t *, float *);
moert_status r_a(const moert_router_cfg *cfg, const void *logits, moert_dtype dtype, uint64_t row_stride, uint32_t num_tokens, const float *bias, int32_t *ids, float *weights);
moert_status r_b(const moert_router_cfg *cfg, const void *logits, moert_dtype dtype, uint64_t row_stride, uint32_t num_tokens, const float *bias, int32_t *ids, float *weights);
static uint64_t s=1; static double u(void){s=s*6364136223846793005ull+1442695040888963407ull;return (double)(s>>11)*(1.0/9007199254740992.0);}
static double nrm(void){double a=u()+1e-300,b=u();return sqrt(-2*log(a))*cos(6.283185307179586*b);}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static int cmpd(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int T=32,E=128,k=8,N=1000,R=30; if(argc>1)T=atoi(argv[1]);
  moert_router_cfg c; memset(&c,0,sizeof c); c.num_experts=E;c.top_k=k;c.kind=MOERT_ROUTER_SOFTMAX_TOPK;c.renormalize=1;c.scale=1.0f;
  float *pool=malloc(sizeof(float)*(1<<20)); for(int i=0;i<(1<<20);i++) pool[i]=(float)nrm();
  float *L=malloc(sizeof(float)*T*E); int32_t ids[4096*8]; float w[4096*8];
  static double va[100000], vb[100000]; int na=0, nb=0; fn f[2]={r_a,r_b};
  for(int r=0;r<R;r++) for(int which=0;which<2;which++) for(int i=0;i<N;i++){
    memcpy(L, pool + (size_t)(u()*((1<<20)-T*E)), sizeof(float)*T*E);
    double a=now(); f[which](&c,L,MOERT_DTYPE_F32,E,T,NULL,ids,w); double d=now()-a;
    if(which) vb[nb++]=d; else va[na++]=d; }
  qsort(va,na,8,cmpd); qsort(vb,nb,8,cmpd);
  printf("A median %.0f p10 %.0f | B median %.0f p10 %.0f\n", va[na/2], va[na/10], vb[nb/2], vb[nb/10]);
}

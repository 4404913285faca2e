#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "internal.h"
moert_status old_moert_route_host(const moert_router_cfg *cfg, const void *logits, moert_dtype dtype, uint64_t row_stride, uint32_t num_tokens, const float *bias, int32_t *ids, float *weights);
moert_status new_moert_route_host(const moert_router_cfg *cfg, const void *logits, moert_dtype dtype, uint64_t row_stride, uint32_t num_tokens, const float *bias, int32_t *ids, float *weights);
static uint64_t s=1; static double u(void){s=s*6364136223846793005ull+1442695040888963407ull;return (double)(s>>11)*(1.0/9007199254740992.0);}
static double nrm(void){double a=u()+1e-300,b=u();return sqrt(-2*log(a))*cos(6.283185307179586*b);}
int main(void){
  static float L[64*512], bias[512]; static int32_t i1[64*16], i2[64*16]; static float w1[64*16], w2[64*16];
  long rows=0, bad=0, st_bad=0;
  const uint32_t Es[]={8,16,32,64,128,256,384,512};
  for(int rep=0; rep<6000; rep++){
    uint32_t E=Es[rep%8], T=64;
    moert_router_cfg c; memset(&c,0,sizeof c);
    int kind=rep%3; /* 0 renorm softmax, 1 norenorm softmax, 2 sigmoid group */
    c.num_experts=E; c.kind = kind==2?MOERT_ROUTER_SIGMOID_GROUP_TOPK:MOERT_ROUTER_SOFTMAX_TOPK;
    c.renormalize = kind!=1 || (rep/3)%2; c.scale = (rep%5==0)?2.5f:1.0f;
    uint32_t k=1+(uint32_t)(u()*(E<16?E:16)); if(k>E)k=E; c.top_k=k;
    if(kind==2){ uint32_t opts[]={1,2,4,8}; uint32_t g=opts[rep%4]; while(E%g) g/=2; c.n_group=g; c.topk_group=1+(uint32_t)(u()*g); if (c.topk_group*(E/g) < k) c.topk_group = (k + E/g - 1)/(E/g); if(c.topk_group>g){c.topk_group=g;} }
    int dist=(rep/7)%10;
    for(uint32_t i=0;i<T*E;i++){ double v=2*nrm();
      if(dist==1) v=floor(u()*4); else if(dist==2) v=floor(u()*E/2)/8; else if(dist==3 && u()<0.3) v=-INFINITY; else if(dist==4) v=20*nrm(); else if(dist==5 && u()<0.01) v=INFINITY; else if(dist==6){ float f=(float)v; uint32_t bb; memcpy(&bb,&f,4); bb&=0xFFFF0000u; memcpy(&f,&bb,4); v=f;} else if(dist==7){ v = 1.0 + ldexp(floor(u()*64), -23);} else if(dist==9){ v = (i%128 < 7) ? 10.0 + (i%128) : ((i%128)==127 ? 1.0+ldexp(1,-23) : ((i%128)==40 ? 1.0 : -5.0 + 0.1*nrm())); } else if(dist==8){ v = (u()<0.5? -0.0: 0.0) + (u()<0.2? 1e-40: 0);}
      L[i]=(float)v; }
    for(uint32_t e=0;e<E;e++) bias[e]= (dist==1)? 0.0f : (float)(0.05*u());
    memset(i1,0x55,sizeof i1); memset(i2,0x55,sizeof i2); memset(w1,0x55,sizeof w1); memset(w2,0x55,sizeof w2);
    moert_status a=old_moert_route_host(&c,L,MOERT_DTYPE_F32,E,T,kind==2?bias:NULL,i1,w1);
    moert_status b=new_moert_route_host(&c,L,MOERT_DTYPE_F32,E,T,kind==2?bias:NULL,i2,w2);
    rows+=T; if(a!=b) st_bad++;
    if(memcmp(i1,i2,T*k*4)||memcmp(w1,w2,T*k*4)){ bad++; if(bad<5) printf("mismatch rep %d E %u k %u kind %d dist %d groups %u/%u\n",rep,E,k,kind,dist,c.n_group,c.topk_group);} 
  }
  printf("rows %ld, mismatching calls %ld, status mismatches %ld\n", rows, bad, st_bad);
  return 0;
}

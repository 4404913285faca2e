#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
static inline uint64_t rd(void){unsigned lo,hi;__asm__ volatile("rdtsc":"=a"(lo),"=d"(hi));return ((uint64_t)hi<<32)|lo;}
static uint64_t s=1; static uint32_t r32(void){s=s*6364136223846793005ull+1442695040888963407ull;return (uint32_t)(s>>33);}
int main(void){ enum{T=32,K=8,E=128};
  static int32_t ids[T*K], off[E+1], pad[E+1], pair_of[T*K], sp[T*K], pt[T*K], be[T*K+E+2], cur[E];
  uint64_t best[5]={~0ull,~0ull,~0ull,~0ull,~0ull};
  for(int it=0;it<20000;it++){ for(int t=0;t<T;t++){ uint32_t used[4]={0}; for(int j=0;j<K;j++){ uint32_t e; do e=r32()%E; while(used[e>>5]>>(e&31)&1); used[e>>5]|=1u<<(e&31); ids[t*K+j]=e;} }
    uint64_t t0=rd();
    for (uint32_t e = 0; e <= E; e++) off[e] = 0;
    for (uint32_t p = 0; p < T*K; p++) off[ids[p] + 1]++;
    uint64_t t1=rd();
    for (uint32_t e = 0; e < E; e++) off[e + 1] += off[e];
    for (uint32_t e = 0; e < E; e++) cur[e] = off[e];
    uint64_t t2=rd();
    for (uint32_t t = 0, p = 0; t < T; t++)
      for (uint32_t j = 0; j < K; j++, p++) { int32_t pos = cur[ids[p]]++; pair_of[p] = pos; sp[pos] = (int32_t)p; pt[pos] = (int32_t)t; }
    uint64_t t3=rd();
    uint32_t blocks=0; pad[0]=0;
    for (uint32_t e = 0; e < E; e++) { uint32_t rows=off[e+1]-off[e]; uint32_t nb=(rows+15)>>4; be[blocks]=e; be[blocks+1]=e; for(uint32_t b=2;b<nb;b++) be[blocks+b]=e; blocks+=nb; pad[e+1]=blocks*16; }
    uint64_t t4=rd();
    uint64_t d[4]={t1-t0,t2-t1,t3-t2,t4-t3}; for(int i=0;i<4;i++) if(d[i]<best[i])best[i]=d[i];
    if(t4-t0<best[4])best[4]=t4-t0;
  }
  printf("tsc ticks: count %lu scan %lu scatter %lu padded %lu total %lu (blocks sink %d)\n",best[0],best[1],best[2],best[3],best[4],be[3]);
}

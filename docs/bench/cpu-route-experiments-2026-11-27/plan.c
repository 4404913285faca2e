#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static uint64_t s=1; static uint32_t r32(void){s=s*6364136223846793005ull+1442695040888963407ull;return (uint32_t)(s>>33);}
int main(void){ enum{T=32,K=8,E=128};
  static int32_t ids[T*K], off[E+1], pad[E+1], pair_of[T*K], sp[T*K], pt[T*K], be[T*K+E+1];
  moert_plan p; memset(&p,0,sizeof p); p.offsets=off; p.padded_offsets=pad; p.pair_of=pair_of; p.sorted_pair=sp; p.packed_token=pt; p.block_expert=be;
  double best=1e18; double tot=0; int n=0;
  for(int it=0;it<20000;it++){ for(int t=0;t<T;t++){ uint32_t used[4]={0}; for(int j=0;j<K;j++){ uint32_t e; do e=r32()%E; while(used[e>>5]>>(e&31)&1); used[e>>5]|=1u<<(e&31); ids[t*K+j]=e;} }
    double a=now(); moert_plan_build(ids,T,K,E,64,&p); double b=now(); if(b-a<best)best=b-a; tot+=b-a; n++; }
  printf("plan T=32: best %.0f ns mean %.0f ns\n",best,tot/n);
}

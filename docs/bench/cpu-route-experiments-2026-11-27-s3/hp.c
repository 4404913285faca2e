#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"
#ifdef NEWPLAN
#include "/tmp/px/newplan.c"
#define BUILD new_plan_build
#else
#define BUILD moert_plan_build
#endif
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static uint64_t s=7; static uint32_t r32(void){s=s*6364136223846793005ull+1442695040888963407ull;return (uint32_t)(s>>33);}
static int cmpd(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(void){
  enum{T=32,K=8,E=128,BR=16,IT=20000};
  static int32_t ids[T*K], off[E+1], pk[T*K], po[T*K], sp[T*K], pad[E+1], be[T*K+E+8];
  static int32_t off2[E+1], pk2[T*K], po2[T*K], sp2[T*K], pad2[E+1], be2[T*K+E+8];
  moert_plan p={0}; p.offsets=off; p.packed_token=pk; p.pair_of=po; p.sorted_pair=sp; p.padded_offsets=pad; p.block_expert=be;
  moert_plan q={0}; q.offsets=off2; q.packed_token=pk2; q.pair_of=po2; q.sorted_pair=sp2; q.padded_offsets=pad2; q.block_expert=be2;
  static double tv[IT]; long bad=0;
  for(int it=0;it<IT;it++){
    for(int t=0;t<T;t++){ for(int j=0;j<K;j++){ int e; int dup; do{ e=r32()%E; dup=0; for(int i=0;i<j;i++) dup|=ids[t*K+i]==e; }while(dup); ids[t*K+j]=e; } }
    double a=now(); BUILD(ids,T,K,E,BR,&p); double b=now(); tv[it]=b-a;
    moert_plan_build(ids,T,K,E,BR,&q);
    bad += memcmp(off,off2,sizeof off)||memcmp(pk,pk2,sizeof pk)||memcmp(po,po2,sizeof po)||memcmp(sp,sp2,sizeof sp)||memcmp(pad,pad2,sizeof pad)||p.num_blocks!=q.num_blocks||memcmp(be,be2,q.num_blocks*4);
  }
  qsort(tv,IT,8,cmpd); printf("plan T=32: median %.0f ns, p10 %.0f ns, mismatches %ld\n", tv[IT/2], tv[IT/10], bad);
}

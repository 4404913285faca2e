#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
void old_plan_build(const int32_t *ids, uint32_t num_tokens, uint32_t top_k, uint32_t num_experts, uint32_t block_rows, moert_plan *plan);
static uint64_t s=7; static uint32_t r32(void){s=s*6364136223846793005ull+1442695040888963407ull;return (uint32_t)(s>>33);}
int main(void){
  enum{MT=600,MK=16,ME=512};
  static int32_t ids[MT*MK], off[ME+1], pk[MT*MK], po[MT*MK], sp[MT*MK], pad[ME+1], be[MT*MK+ME+8];
  static int32_t off2[ME+1], pk2[MT*MK], po2[MT*MK], sp2[MT*MK], pad2[ME+1], be2[MT*MK+ME+8];
  long bad=0, runs=0;
  const uint32_t Es[]={8,16,24,60,64,128,160,256,512}; const uint32_t BRs[]={1,2,3,16,64,100,128};
  for(int it=0;it<20000;it++){
    uint32_t E=Es[r32()%9], k=1+r32()%(E<16?E:16), T=r32()%MT, br=BRs[r32()%7];
    if(it%3==0) T=r32()%40;
    for(uint32_t t=0;t<T;t++) for(uint32_t j=0;j<k;j++){ int32_t e; int dup; do{ e=(int32_t)(r32()%E); if(it%5==0) e=(int32_t)(r32()%(k+2<E?k+2:E)); dup=0; for(uint32_t i=0;i<j;i++) dup|=ids[t*k+i]==e; }while(dup); ids[t*k+j]=e; }
    moert_plan p={0}; p.offsets=off; p.packed_token=pk; p.pair_of=po; p.sorted_pair=sp; p.padded_offsets=pad; p.block_expert=be;
    moert_plan q={0}; q.offsets=off2; q.packed_token=pk2; q.pair_of=po2; q.sorted_pair=sp2; q.padded_offsets=pad2; q.block_expert=be2;
    moert_plan_build(ids,T,k,E,br,&p); old_plan_build(ids,T,k,E,br,&q); runs++;
    uint32_t n=T*k;
    if(memcmp(off,off2,(E+1)*4)||memcmp(pk,pk2,n*4)||memcmp(po,po2,n*4)||memcmp(sp,sp2,n*4)||memcmp(pad,pad2,(E+1)*4)||p.num_blocks!=q.num_blocks||memcmp(be,be2,q.num_blocks*4)){ if(bad<5) printf("mismatch T %u k %u E %u br %u\n",T,k,E,br); bad++; }
  }
  printf("runs %ld mismatches %ld\n",runs,bad);
}

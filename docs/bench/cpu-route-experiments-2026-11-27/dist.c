#include <stdio.h>
#include <stdlib.h>
static unsigned long long s=88172645463325252ull; static double u(void){s^=s<<13;s^=s>>7;s^=s<<17;return (s>>11)*(1.0/9007199254740992.0);}
int main(){ int cfg[][2]={{4,2},{8,1},{8,2},{4,3},{16,1}};
 for(int c=0;c<5;c++){int cells=cfg[c][0],d=cfg[c][1]; long N=200000; double sum=0; long g16=0,g24=0,g32=0;
  for(long n=0;n<N;n++){ double x[128]; for(int e=0;e<128;e++)x[e]=u();
   double th=2; for(int l=0;l<cells;l++){ double top[4]={-1,-1,-1,-1}; for(int e=l;e<128;e+=cells){ double v=x[e]; for(int j=0;j<d;j++){ if(v>top[j]){double t=top[j];top[j]=v;v=t;} } } if(top[d-1]<th)th=top[d-1]; }
   int C=0; for(int e=0;e<128;e++) C+=x[e]>=th; sum+=C; g16+=C>16; g24+=C>24; g32+=C>32; }
  printf("cells %d d %d: mean %.2f P(>16) %.4f P(>24) %.5f P(>32) %.6f\n",cells,d,sum/N,(double)g16/N,(double)g24/N,(double)g32/N);}
}

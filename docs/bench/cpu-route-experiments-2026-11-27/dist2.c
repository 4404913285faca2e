#include <stdio.h>
#include <stdlib.h>
static unsigned long long s=88172645463325252ull; static double u(void){s^=s<<13;s^=s>>7;s^=s<<17;return (s>>11)*(1.0/9007199254740992.0);}
static int cmpd(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?1:x>y?-1:0;}
int main(){ int cfg[][2]={{8,2},{4,3},{4,2},{8,3}};
 for(int c=0;c<4;c++){int cells=cfg[c][0],d=cfg[c][1]; long N=100000; double sum=0; long h[40]={0};
  for(long n=0;n<N;n++){ double x[128]; for(int e=0;e<128;e++)x[e]=u();
   double tr[64]; int nt=0; for(int l=0;l<cells;l++){ double top[4]={-1,-1,-1,-1}; for(int e=l;e<128;e+=cells){ double v=x[e]; for(int j=0;j<d;j++){ if(v>top[j]){double t=top[j];top[j]=v;v=t;} } } for(int j=0;j<d;j++)tr[nt++]=top[j]; }
   qsort(tr,nt,sizeof(double),cmpd); double th=tr[7];
   int C=0; for(int e=0;e<128;e++) C+=x[e]>=th; sum+=C; h[C<39?C:39]++; }
  printf("cells %d d %d (8th of %d): mean %.2f  P(C=8) %.3f P(>12) %.4f P(>16) %.5f\n",cells,d,cells*d,sum/N,(double)h[8]/N,0.0+ ({long t=0; for(int i=13;i<40;i++)t+=h[i]; t;})/(double)N, ({long t=0; for(int i=17;i<40;i++)t+=h[i]; t;})/(double)N);}
}

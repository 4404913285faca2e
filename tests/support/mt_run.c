/* mt_run.c — running a suite, and small conveniences shared by the tests. */
#include <stdio.h>
#include <stdlib.h>

#include "moert_test.h"

int mt_run_suite(Suite *s) {
  fprintf(stderr, "[seed] base seed: MOERT_TEST_SEED=%llu\n",
          (unsigned long long)mt_base_seed());
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (failed)
    fprintf(stderr, "[seed] %d failed; replay with MOERT_TEST_SEED=%llu\n", failed,
            (unsigned long long)mt_base_seed());
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

moert_runtime *mt_cpu_runtime(uint32_t num_threads) {
  moert_runtime_options o;
  MT_OK(moert_runtime_options_init(&o));
  o.backend = MOERT_BACKEND_CPU;
  o.num_threads = num_threads;
  moert_runtime *rt = NULL;
  MT_OK(moert_runtime_create(&o, &rt));
  ck_assert_ptr_nonnull(rt);
  return rt;
}

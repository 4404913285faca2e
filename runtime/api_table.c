/* api_table.c — moert_get_api(): the whole ABI as one const table, so a dlopen host
 * resolves a single symbol.  Members follow the header's order; new ones are appended. */
#include "internal.h"

static const moert_api api_table = {
    .struct_size = sizeof(moert_api),
    .abi_major = MOERT_VERSION_MAJOR,
    .version = moert_version,
    .version_string = moert_version_string,
    .status_string = moert_status_string,
    .last_error = moert_last_error,
    .runtime_options_init = moert_runtime_options_init,
    .runtime_create = moert_runtime_create,
    .runtime_destroy = moert_runtime_destroy,
    .runtime_backend = moert_runtime_backend,
    .runtime_backend_note = moert_runtime_backend_note,
    .layer_desc_init = moert_layer_desc_init,
    .scratch_create = moert_scratch_create,
    .scratch_destroy = moert_scratch_destroy,
    .scratch_prepare = moert_scratch_prepare,
    .scratch_memory = moert_scratch_memory,
    .experts_create = moert_experts_create,
    .experts_destroy = moert_experts_destroy,
    .route = moert_route,
    .set_routing = moert_set_routing,
    .forward = moert_forward,
    .moe = moert_moe,
    .scratch_routing = moert_scratch_routing,
    .scratch_plan = moert_scratch_plan,
};

MOERT_API const moert_api *moert_get_api(uint32_t abi_major) {
  if (abi_major != MOERT_VERSION_MAJOR) {
    moert_fail(MOERT_ERR_UNSUPPORTED,
               "moert_get_api: ABI major %u asked for; this library (%s) has major %u",
               (unsigned)abi_major, moert_version_string(), (unsigned)MOERT_VERSION_MAJOR);
    return NULL;
  }
  return &api_table;
}

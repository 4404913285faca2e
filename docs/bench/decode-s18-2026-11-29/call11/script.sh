. tools/device-env.sh; run forward 250 build-gpu/tests/test_gpu_forward

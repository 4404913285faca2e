# Which NVML power readings follow a short load: the average (nvmlDeviceGetPowerUsage), the
# instant field (NVML_FI_DEV_POWER_INSTANT = 186) and the averaged field (185), sampled every
# ms during a bf16 matmul loop of about 0.3 s after idle.
import ctypes, threading, time, torch
nv = ctypes.CDLL("libnvidia-ml.so.1"); nv.nvmlInit_v2()
dev = ctypes.c_void_p(); nv.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(dev))
class FV(ctypes.Structure):
    _fields_ = [("fieldId", ctypes.c_uint), ("scopeId", ctypes.c_uint), ("timestamp", ctypes.c_longlong),
                ("latencyUsec", ctypes.c_longlong), ("valueType", ctypes.c_uint), ("nvmlReturn", ctypes.c_uint),
                ("value", ctypes.c_ulonglong)]
lim = ctypes.c_uint(); print("enforced limit rc", nv.nvmlDeviceGetEnforcedPowerLimit(dev, ctypes.byref(lim)), lim.value, "mW")
def sample():
    p = ctypes.c_uint(); rc = nv.nvmlDeviceGetPowerUsage(dev, ctypes.byref(p))
    f = (FV * 2)(); f[0].fieldId = 186; f[1].fieldId = 185
    rc2 = nv.nvmlDeviceGetFieldValues(dev, 2, f)
    return (p.value if rc == 0 else -rc, f[0].value if rc2 == 0 and f[0].nvmlReturn == 0 else -1000 - f[0].nvmlReturn,
            f[1].value if rc2 == 0 and f[1].nvmlReturn == 0 else -1000 - f[1].nvmlReturn, f[0].valueType)
stop = False; rows = []
def loop():
    while not stop: rows.append((time.time(),) + sample()); time.sleep(0.001)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
torch.cuda.synchronize(); time.sleep(2)
t = threading.Thread(target=loop); t.start(); time.sleep(0.05); t0 = time.time()
for _ in range(200): c = a @ b
torch.cuda.synchronize(); t1 = time.time(); time.sleep(0.3); stop = True; t.join()
print("load %.3f s, %d samples" % (t1 - t0, len(rows)))
for i in range(0, len(rows), max(1, len(rows) // 40)):
    r = rows[i]; print("%+.3f avg %s inst %s fld185 %s type %s" % (r[0] - t0, r[1], r[2], r[3], r[4]))
print("max avg", max(r[1] for r in rows), "max inst", max(r[2] for r in rows), "max 185", max(r[3] for r in rows))

// {{name}}: a ledge function in AssemblyScript.
//
// Publishes each event's payload on OUT_TOPIC (default "{{name}}/out"),
// logs its size, and responds with it. An empty payload is a permanent
// failure: retrying the same event cannot fix it.

import * as ledge from "./ledge";

// The host writes each payload here; ledge_handle frees it.
export function ledge_alloc(len: usize): usize {
  return heap.alloc(len);
}

export function ledge_handle(ptr: usize, len: usize): i32 {
  if (len == 0) {
    heap.free(ptr);
    respond(String.UTF8.encode("empty payload"));
    return ledge.STATUS_PERMANENT;
  }
  const payload = new ArrayBuffer(<i32>len);
  memory.copy(changetype<usize>(payload), ptr, len);
  heap.free(ptr);
  const topic = String.UTF8.encode(env("OUT_TOPIC", "{{name}}/out"));
  const code = ledge.publish(
    changetype<usize>(topic), topic.byteLength,
    changetype<usize>(payload), payload.byteLength,
    ledge.QOS_AT_LEAST_ONCE,
  );
  if (code != ledge.OK) {
    respond(String.UTF8.encode("publish refused with code " + code.toString()));
    return ledge.STATUS_FAILED;
  }
  const line = String.UTF8.encode("published " + len.toString() + " bytes");
  ledge.log(ledge.LOG_INFO, changetype<usize>(line), line.byteLength);
  respond(payload);
  return ledge.STATUS_OK;
}

function respond(bytes: ArrayBuffer): void {
  ledge.respond(changetype<usize>(bytes), bytes.byteLength);
}

// The function's env entry `key`, or `fallback` if it is unset.
function env(key: string, fallback: string): string {
  const name = String.UTF8.encode(key);
  const buffer = new ArrayBuffer(256);
  const n = ledge.env(changetype<usize>(name), name.byteLength, changetype<usize>(buffer), 256);
  if (n < 0 || n > 256) return fallback;
  return String.UTF8.decodeUnsafe(changetype<usize>(buffer), <usize>n);
}

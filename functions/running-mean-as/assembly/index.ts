// running-mean: a ledge function in AssemblyScript.
//
// Keeps the count and mean of the readings it has seen (state lives in the
// warm instance), publishes `{"count":N,"mean":M}` on `means/<subject>` and
// responds with it. A reading is a number, or a sensor event's JSON with a
// `"value":` field. Anything else is a permanent failure: retrying the same
// payload cannot make it a number.
//
// Build: ./build.sh [OUT.wasm]   (assemblyscript from npm)

import * as ledge from "../../assemblyscript/ledge";

let count: i32 = 0;
let sum: f64 = 0;

// The host writes each payload here; ledge_handle frees it.
export function ledge_alloc(len: usize): usize {
  return heap.alloc(len);
}

export function ledge_handle(ptr: usize, len: usize): i32 {
  const text = String.UTF8.decodeUnsafe(ptr, len);
  heap.free(ptr);
  const at = text.indexOf('"value":');
  const value = parseFloat(at >= 0 ? text.substring(at + 8) : text);
  if (isNaN(value)) {
    respond("not a reading: " + text);
    return ledge.STATUS_PERMANENT;
  }
  count += 1;
  sum += value;
  const body = '{"count":' + count.toString() + ',"mean":' + (sum / <f64>count).toString() + "}";
  let subject = contextString(ledge.FIELD_EVENT_SUBJECT);
  if (subject.length == 0) subject = "local";
  const topic = String.UTF8.encode("means/" + subject);
  const payload = String.UTF8.encode(body);
  const code = ledge.publish(
    changetype<usize>(topic), topic.byteLength,
    changetype<usize>(payload), payload.byteLength,
    ledge.QOS_AT_MOST_ONCE,
  );
  if (code != ledge.OK) log(ledge.LOG_WARN, "publish refused with code " + code.toString());
  log(ledge.LOG_INFO, "reading " + count.toString() + " from " + subject);
  respond(body);
  return ledge.STATUS_OK;
}

function respond(text: string): void {
  const bytes = String.UTF8.encode(text);
  ledge.respond(changetype<usize>(bytes), bytes.byteLength);
}

function log(level: i32, text: string): void {
  const bytes = String.UTF8.encode(text);
  ledge.log(level, changetype<usize>(bytes), bytes.byteLength);
}

// A string field of the context ("" if the host has none).
function contextString(field: i32): string {
  const buffer = new ArrayBuffer(256);
  const n = ledge.context(field, changetype<usize>(buffer), 256);
  if (n < 0) return "";
  return String.UTF8.decodeUnsafe(changetype<usize>(buffer), <usize>min(n, 256));
}

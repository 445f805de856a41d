// Bench-only Worker (bench/workerd): a tail consumer that does nothing. Delivering a batch to it
// costs what every consumer pays whatever it does (the driver's call, serializing the items over
// RPC, materializing them in the consumer's isolate); the bench subtracts it.
import { WorkerEntrypoint } from "cloudflare:workers";

export default class extends WorkerEntrypoint {
  async tail(_items) {}
  async fetch() {
    return new Response("noop\n");
  }
}

/**
 * `pnpm bench handshake`: complete consent handshakes (PROTOCOL.md section 2) per second from a separate load
 * process over loopback, against the Neuron as `pnpm start` runs it (product.ts: the built dist/main.js with its
 * embedded registry, its log output in a file) and, in the same run and in an order that turns each round, a bare
 * `ws` + better-sqlite3 baseline (a child process), so the figure is a ratio, and a reference doing careagent/neuron's
 * work per handshake (server-reference.ts). Prints handshakes/s, the ratios, server CPU per handshake (all of the
 * process's threads) and by where a connection stops (upgraded, challenged, complete), p50/p99 at concurrency 64
 * and paced at 200/s with the Neuron's event-loop delay and GC pauses, and peak RSS. SQLite files live on /dev/shm
 * when there is one (TRAPS.md).
 *
 * `pnpm bench handshake --hold`: 10 000 WebSocket connections left in the auth step, and the server's memory.
 *
 * `pnpm bench handshake --ops`: Effect operations and fibers per handshake, counted (ops.ts): not timed, so a
 * change can be judged on a busy machine.
 *
 * `pnpm bench handshake --calls`: the calls each connection makes into Node's sockets, streams, events and timers,
 * counted in the Neuron and in the baseline (calls.ts).
 *
 * `pnpm bench handshake --store`: the completion's write alone (store.ts): CPU and allocation per completion
 * through the RelationshipStore, against the same work done directly on better-sqlite3.
 *
 * Environment: BENCH_HANDSHAKES (20000 per server), BENCH_ROUNDS (4), BENCH_CONCURRENCY (64),
 * BENCH_PATIENTS (2000), BENCH_PACED_RATE (200), BENCH_HOLD (10000), BENCH_PROFILE=<folder> (CPU profiles of
 * both servers' last round and of the Neuron while paced, and where their CPU went), BENCH_FLOOR=1 (one more side:
 * the baseline writing what the Neuron must write for each completion, server-baseline.ts `obligations`).
 */
import { run } from "./harness.js"
import { hold } from "./hold.js"
import { throughput } from "./throughput.js"

if (process.argv.includes("--ops")) await import("./ops.js")
else if (process.argv.includes("--calls")) await run((await import("./calls.js")).calls)
else if (process.argv.includes("--store")) await import("./store.js")
else await run(process.argv.includes("--hold") ? hold : throughput)

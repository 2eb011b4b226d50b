/**
 * `pnpm bench handshake`: complete consent handshakes (PROTOCOL.md section 2) per second from a separate load
 * process over loopback, against the real HandshakeServer (in this process) and, alternately in the same run,
 * a bare `ws` + better-sqlite3 baseline (a child process), so the figure is a ratio. Prints handshakes/s,
 * the ratio, p50/p99 at concurrency 64 and at a paced load of half the Neuron's throughput, server CPU per
 * handshake and peak RSS. SQLite files live on /dev/shm when there is one (the work disk is noisy: TRAPS.md).
 *
 * `pnpm bench handshake --hold`: 10 000 WebSocket connections left in the auth step, and the server's memory.
 *
 * Environment: BENCH_HANDSHAKES (20000 per server), BENCH_ROUNDS (4), BENCH_CONCURRENCY (64),
 * BENCH_PATIENTS (2000), BENCH_HOLD (10000), BENCH_HTTP_SPANS=1 (keep the platform's HTTP span for
 * /ws/handshake, which the Neuron's own HTTP composition drops), BENCH_PROFILE=<folder> (CPU profiles of both servers' last round, and where
 * their CPU went).
 */
import { run } from "./harness.js"
import { hold } from "./hold.js"
import { throughput } from "./throughput.js"

await run(process.argv.includes("--hold") ? hold : throughput)

/**
 * The Neuron's event metrics, what an operator graphs beside the gauges `/metrics` reads at scrape time: heartbeat
 * outcomes, backoff delays, handshake outcomes and latency, SQLite transaction time, API requests by route and
 * status. One prom-client registry per Neuron (a process may run several, as the tests do), served by `/metrics`.
 * Services that record take it with `Effect.serviceOption`: built without it (a test of something else), they
 * record nothing.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Prometheus from "prom-client"

/** The instruments of one Neuron. */
export interface NeuronMetricsService {
  readonly registry: Prometheus.Registry
  /** `neuron_heartbeats_total{outcome}`: `ok`, `failed`, `conflict`, `idle` (deregistered), `error` (unexpected). */
  readonly heartbeat: (outcome: string) => void
  /** `neuron_heartbeat_backoff_delay_seconds`: each delay scheduled after a failed heartbeat. */
  readonly backoffDelay: (delay: Duration.Duration) => void
  /** `neuron_handshake_duration_seconds{outcome}`: from upgrade to close; `_count` gives outcomes by code. */
  readonly handshake: (outcome: string, seconds: number) => void
  /** `neuron_sqlite_transaction_seconds{operation}`. */
  readonly transaction: (operation: string, seconds: number) => void
  /** `neuron_sqlite_group_commit_size{operation}`: how many writes one group-committed transaction carried. */
  readonly groupCommit: (operation: string, size: number) => void
  /** `neuron_api_requests_total{method,route,status}` and `neuron_api_request_duration_seconds{method,route}`. */
  readonly apiRequest: (method: string, route: string, status: number, seconds: number) => void
}

const make = (): NeuronMetricsService => {
  const registry = new Prometheus.Registry()
  const heartbeats = new Prometheus.Counter({
    name: "neuron_heartbeats_total",
    help: "Heartbeat rounds by outcome: ok, failed, conflict, idle (deregistered), error (unexpected)",
    labelNames: ["outcome"],
    registers: [registry]
  })
  const backoff = new Prometheus.Histogram({
    name: "neuron_heartbeat_backoff_delay_seconds",
    help: "Delays scheduled after a failed heartbeat (exponential, full jitter, capped)",
    buckets: [1, 5, 10, 20, 40, 80, 160, 240, 300],
    registers: [registry]
  })
  const handshakes = new Prometheus.Histogram({
    name: "neuron_handshake_duration_seconds",
    help: "Handshakes from upgrade to close, by outcome: completed, or the refusal's code",
    labelNames: ["outcome"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry]
  })
  const transactions = new Prometheus.Histogram({
    name: "neuron_sqlite_transaction_seconds",
    help: "SQLite write transactions (BEGIN to COMMIT), by operation",
    labelNames: ["operation"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [registry]
  })
  const groupCommits = new Prometheus.Histogram({
    name: "neuron_sqlite_group_commit_size",
    help: "Writes carried by one group-committed transaction, by operation (1: nothing else was waiting)",
    labelNames: ["operation"],
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [registry]
  })
  const requests = new Prometheus.Counter({
    name: "neuron_api_requests_total",
    help: "HTTP API requests by method, route (its template) and status",
    labelNames: ["method", "route", "status"],
    registers: [registry]
  })
  const requestTime = new Prometheus.Histogram({
    name: "neuron_api_request_duration_seconds",
    help: "HTTP API request time by method and route",
    labelNames: ["method", "route"],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [registry]
  })
  return {
    registry,
    heartbeat: (outcome) => heartbeats.inc({ outcome }),
    backoffDelay: (delay) => backoff.observe(Duration.toSeconds(delay)),
    handshake: (outcome, seconds) => handshakes.observe({ outcome }, seconds),
    transaction: (operation, seconds) => transactions.observe({ operation }, seconds),
    groupCommit: (operation, size) => groupCommits.observe({ operation }, size),
    apiRequest: (method, route, status, seconds) => {
      requests.inc({ method, route, status: String(status) })
      requestTime.observe({ method, route }, seconds)
    }
  }
}

/** The Neuron's metrics. */
export class NeuronMetrics extends Context.Tag("neuron/NeuronMetrics")<NeuronMetrics, NeuronMetricsService>() {
  /** A fresh registry. */
  static readonly layer: Layer.Layer<NeuronMetrics> = Layer.sync(NeuronMetrics, make)
}

/**
 * Times `effect` (a write transaction) into `neuron_sqlite_transaction_seconds{operation}` when the Neuron's
 * metrics are there; with none, `effect` as it is.
 */
export const timeTransaction =
  (metrics: Option.Option<NeuronMetricsService>, operation: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    // Its outcome taken as a value and given back, rather than `ensuring` (a finalizer): cheaper, and a write
    // transaction does not stop half-way (callers run it uninterruptibly).
    Option.isNone(metrics) ? effect : Effect.clockWith((clock) => {
      const start = clock.unsafeCurrentTimeNanos()
      return Effect.flatMap(Effect.exit(effect), (exit) => {
        metrics.value.transaction(operation, Number(clock.unsafeCurrentTimeNanos() - start) / 1e9)
        return exit
      })
    })

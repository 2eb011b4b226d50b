/**
 * Recovery by replay: recompute the snapshot tables from `lifecycle_events`. Events never hold the bearer
 * token, so a rebuilt registration that needs one either keeps the old row's token (same registration id) or
 * is ended by a real event, and the Neuron registers again. docs/store.md, "Recovery by replay".
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import type { AuditLog } from "./AuditLog.js"
import * as Lifecycle from "./Lifecycle.js"
import * as Events from "./LifecycleEvent.js"
import type { LifecycleEvent } from "./LifecycleEvent.js"
import { keepsToken, type Tables } from "./Snapshot.js"

const LOST_TOKEN = "the bearer token is not in the event log; the snapshot was rebuilt without it, so register again"

/**
 * Replays the whole event log into the snapshot tables, logs a warning and appends `store.snapshot_rebuilt`.
 * Run it inside a transaction; `append` writes an event through the store's ordinary transition.
 */
export const replaySnapshot = (options: {
  readonly tables: Tables
  readonly audit: AuditLog
  readonly reason: string
  readonly append: (expectedVersion: number, event: LifecycleEvent) => Effect.Effect<unknown, unknown>
}) =>
  Effect.gen(function*() {
    const { audit, reason, tables } = options
    const log = yield* tables.readLog
    let state = Lifecycle.initial
    for (const { at, event, seq, version } of log) {
      const next = Lifecycle.apply(state, event, at)
      // The event log is the source of truth: if it does not replay, a person must look at it.
      if (Either.isLeft(next)) {
        return yield* Effect.dieMessage(`lifecycle event ${seq} does not replay: ${next.left.message}`)
      }
      if (next.right === state || Lifecycle.versionOf(next.right, event) !== version) {
        return yield* Effect.dieMessage(`lifecycle event ${seq} disagrees with its version ${version}`)
      }
      state = next.right
    }
    const r = state.registration
    // The old row's token is kept only for the same registration: a stale one costs one 401, then the
    // ordinary lost → register path.
    const [old] = yield* tables.readRawRegistration
    const same = old !== undefined && r.registration_id !== null && old.registration_id === r.registration_id
    const token = same && keepsToken(r.state) && typeof old.bearer_token === "string" && old.bearer_token !== ""
      ? Redacted.make(old.bearer_token)
      : null
    const lastHeartbeat = same && typeof old.last_heartbeat_at === "string" ? old.last_heartbeat_at : null
    const lastSeq = log.length === 0 ? 0 : log[log.length - 1].seq
    yield* tables.writeRegistration({ ...r, bearer_token: token, last_heartbeat_at: lastHeartbeat, last_seq: lastSeq })
    yield* tables.deleteProviders
    yield* Effect.forEach(state.providers.values(), (p) => tables.writeProvider(p), { discard: true })

    const mustRegisterAgain = token === null && keepsToken(r.state)
    const details = { reason, events: log.length, must_register_again: mustRegisterAgain }
    yield* Effect.logWarning("rebuilt the registration snapshot from the event log").pipe(Effect.annotateLogs(details))
    yield* audit.append({ actor: "neuron", action: "store.snapshot_rebuilt", details })
    if (mustRegisterAgain) {
      yield* options.append(
        r.version,
        r.state === "registered"
          ? new Events.RegistrationLost({ reason: LOST_TOKEN })
          : new Events.Deregistered({ reason: `${LOST_TOKEN}; the registry expires the old one by its TTL` })
      )
    }
  })

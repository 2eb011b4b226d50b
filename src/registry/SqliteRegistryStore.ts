/**
 * The registry's store on SQLite (one process): SQLite is the record, `NeuronIndex` the working copy loaded
 * from it at start.
 * Registration, rotation, endpoint and status changes are written (synchronous = FULL) before they are answered;
 * heartbeat times are group-committed, one statement `FLUSH_EVERY` after the first uncommitted one, so a crash
 * loses at most that much of them and never a registration. One write lock orders every change of a row's
 * status or token.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"
import { describeCause } from "../log/Causes.js"
import type { RegisterNeuronRequest } from "../protocol/AxonApi.js"
import { AlreadyRegistered, Forbidden, NotRegistered, Unauthorized } from "../protocol/AxonApi.js"
import * as Alert from "./Alerts.js"
import { Alerts } from "./Alerts.js"
import * as HeartbeatFastPath from "./HeartbeatFastPath.js"
import type { NeuronEntry } from "./NeuronIndex.js"
import { NeuronIndex } from "./NeuronIndex.js"
import * as NeuronRows from "./NeuronRows.js"
import { RegistrySettings } from "./RegistrySettings.js"
import type { LiveQuery, Registration, RegistryStoreShape } from "./RegistryStore.js"
import {
  DEFAULT_INTERVAL_S,
  enrollment,
  FLUSH_EVERY,
  groupCommitRegistrations,
  RegistryStore
} from "./RegistryStore.js"
import * as Tokens from "./Tokens.js"

/** What the heartbeat's fast path uses of the SQLite store: synchronous, in memory. */
export interface InMemoryBeats {
  readonly check: (
    registrationId: string,
    authorization: string | undefined
  ) => NeuronEntry | Unauthorized | Forbidden | NotRegistered
  readonly beatInMemory: (entry: NeuronEntry, endpointUrl: string, nowMs: number) => boolean
  readonly heartbeat: (entry: NeuronEntry, endpointUrl: string) => Effect.Effect<number, NotRegistered>
}

/** A registration waiting for the group commit: checked, its token made. */
interface PendingRegistration {
  readonly request: RegisterNeuronRequest
  readonly enrolled: boolean
  readonly tokenHash: Buffer
  readonly intervalS: number
}

/** A new row of `neurons`, before SQLite gives it its `seq`. */
type NewRow = Omit<NeuronRows.NeuronRow, "seq"> & Record<string, string | number>

/** What a registration of a batch writes. */
type Plan =
  | { readonly _tag: "Insert"; readonly item: PendingRegistration; readonly row: NewRow }
  | {
    readonly _tag: "Rotate"
    readonly item: PendingRegistration
    readonly live: NeuronEntry
    readonly fields: Record<string, string | number>
  }

/** A committed registration, before its log line. */
interface Committed {
  readonly entry: NeuronEntry
  readonly created: boolean
  readonly wasDown: boolean
  readonly nowMs: number
  readonly shortened: boolean
}

/** The SQLite store (needs a migrated SQLite `SqlClient`). */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const alerts = yield* Alerts
  const { dataDir, enrollmentHash } = yield* RegistrySettings
  const index = new NeuronIndex()
  const writeLock = yield* Effect.makeSemaphore(1)
  const locked = writeLock.withPermits(1)
  // Wakes the monitor when a registration may have shortened the sweep period.
  const intervalChanges = yield* Queue.sliding<void>(1)
  // Open while heartbeat times wait for a group commit: an idle registry does not tick.
  const commitDue = yield* Effect.makeLatch(false)

  for (const entry of yield* NeuronRows.loadAll) index.put(entry)
  yield* Effect.logInfo("registrations loaded").pipe(Effect.annotateLogs({
    ...index.counts(),
    data_dir: dataDir,
    enrollment: Option.isSome(enrollmentHash) ? "required" : "off (development mode: a duplicate NPI is 409)"
  }))

  const recovered = (entry: NeuronEntry, nowMs: number, action: string) =>
    alerts.append([Alert.make("neuron_recovered", entry, 0, new Date(nowMs).toISOString(), action)])

  /**
   * Commits a batch of registrations (one transaction when there are several) and only then changes the index,
   * so the index never holds a registration SQLite does not. Each is judged against the index as it was before the
   * batch: two registrations of one organization in one batch both try to insert, the unique index of live
   * organizations refuses the batch, and the group commit retries them one by one (the second then `409`s, or
   * rotates with the enrollment token), as if they had come one after the other.
   */
  const commitRegistrations = (items: ReadonlyArray<PendingRegistration>) =>
    locked(Effect.gen(function*() {
      const nowMs = yield* Clock.currentTimeMillis
      const shortest = index.shortestIntervalS()
      const plans = items.map((item): Plan | AlreadyRegistered => {
        const live = index.liveByOrganization(item.request.organization_npi)
        if (live !== undefined && !item.enrolled) {
          return new AlreadyRegistered({
            message: "organization_npi is already registered; re-registering needs the enrollment token"
          })
        }
        const fields = {
          organization_name: item.request.organization_name,
          organization_type: item.request.organization_type,
          neuron_endpoint_url: item.request.neuron_endpoint_url,
          heartbeat_interval_s: item.intervalS,
          token_hash: item.tokenHash.toString("hex"),
          status: "reachable" as const,
          last_heartbeat_at: nowMs
        }
        return live !== undefined
          ? { _tag: "Rotate", item, live, fields }
          : {
            _tag: "Insert",
            item,
            row: {
              registration_id: Crypto.randomUUID(),
              organization_npi: item.request.organization_npi,
              ...fields,
              registered_at: nowMs
            }
          }
      })
      const rows = plans.flatMap((plan) => plan._tag === "Insert" ? [plan.row] : [])
      const write = Effect.gen(function*() {
        for (const plan of plans) {
          if (plan._tag !== "Rotate") continue
          yield* sql`UPDATE neurons SET ${sql.update(plan.fields)} WHERE registration_id = ${plan.live.registrationId}`
        }
        // One statement for every new registration of the batch.
        return rows.length === 0 ?
          [] :
          yield* sql<{ seq: number; registration_id: string }>`INSERT INTO neurons ${
            sql.insert(rows)
          } RETURNING seq, registration_id`
      })
      const inserted = yield* (items.length > 1 ? sql.withTransaction(write) : write)
      const seqs = new Map(inserted.map((row) => [row.registration_id, row.seq]))
      // Committed: now the index.
      return plans.map((plan): Exit.Exit<Committed, AlreadyRegistered> => {
        if (plan._tag === "AlreadyRegistered") return Exit.fail(plan)
        const shortened = shortest === undefined || plan.item.intervalS < shortest
        if (plan._tag === "Insert") {
          const entry = NeuronRows.toEntry({ ...plan.row, seq: seqs.get(plan.row.registration_id)! })
          index.put(entry)
          return Exit.succeed({ entry, created: true, wasDown: false, nowMs, shortened })
        }
        const { item, live } = plan
        const wasDown = live.status === "down"
        live.organizationName = item.request.organization_name
        live.organizationType = item.request.organization_type
        live.endpointUrl = item.request.neuron_endpoint_url
        live.lastBeatText = undefined
        live.lastHeartbeatMs = nowMs
        index.setTokenHash(live, item.tokenHash)
        index.setInterval(live, item.intervalS)
        index.setStatus(live, "reachable")
        return Exit.succeed({ entry: live, created: false, wasDown, nowMs, shortened })
      })
    })).pipe(Effect.catchTag("SqlError", Effect.die))

  const commitRegistration = yield* groupCommitRegistrations(commitRegistrations)

  /**
   * `POST /v1/neurons`: a new registration, or, with the enrollment token, a rotation of the live one, answered
   * once committed (group commit). Untraced: the request has its span; one more per registration cost a
   * measurable share of it (issue 14).
   */
  const register = Effect.fnUntraced(function*(
    request: RegisterNeuronRequest,
    authorization: string | undefined
  ) {
    const enrolled = yield* enrollment(enrollmentHash, authorization)
    const token = Tokens.generate()
    const { created, entry, nowMs, shortened, wasDown } = yield* commitRegistration({
      request,
      enrolled,
      tokenHash: Tokens.hash(Redacted.value(token)),
      intervalS: request.heartbeat_interval_s ?? DEFAULT_INTERVAL_S
    })
    // Only a shorter interval than every live one brings the next sweep forward: wake the monitor for that alone
    // (a wake re-plans its wait, a measurable part of a registration's cost when the network registers).
    if (shortened) yield* Queue.offer(intervalChanges, undefined)
    if (wasDown) yield* recovered(entry, nowMs, "re-registered: restored to reachable")
    yield* Effect.logInfo(created ? "neuron registered" : "neuron re-registered: bearer token rotated").pipe(
      Effect.annotateLogs({ registration_id: entry.registrationId, organization_npi: entry.organizationNpi })
    )
    return { entry, token, created } satisfies Registration
  })

  /**
   * The registration a request may act on, or why not: 401 without a well-formed known token, 403 for another
   * live registration's token, 404 for a deregistered registration's own token. Synchronous: hot path.
   */
  const check = (
    registrationId: string,
    authorization: string | undefined
  ): NeuronEntry | Unauthorized | Forbidden | NotRegistered => {
    const token = Tokens.parseBearer(authorization)
    if (token === undefined) {
      return new Unauthorized({ message: "a bearer token (43 base64url characters) is required" })
    }
    const tokenHash = Tokens.hash(token)
    const entry = index.get(registrationId)
    if (entry !== undefined && Tokens.hashesEqual(tokenHash, Buffer.from(entry.tokenKey, "latin1"))) {
      return entry.status === "deregistered"
        ? new NotRegistered({ message: "this registration was deregistered; register again" })
        : entry
    }
    return index.ownerOf(tokenHash) !== undefined
      ? new Forbidden({ message: "this bearer token belongs to another registration" })
      : new Unauthorized({ message: "unknown bearer token" })
  }

  /** `check` as an Effect. */
  const authorize = (
    registrationId: string,
    authorization: string | undefined
  ): Effect.Effect<NeuronEntry, Unauthorized | Forbidden | NotRegistered> => {
    const result = check(registrationId, authorization)
    return "_tag" in result ? Effect.fail(result) : Effect.succeed(result)
  }

  /**
   * Records a heartbeat in memory when that is all it takes (a reachable neuron at the same endpoint); false
   * when it needs `heartbeat` (the endpoint moved, or the neuron comes back from `down`). Synchronous: hot path.
   */
  const beatInMemory = (entry: NeuronEntry, endpointUrl: string, nowMs: number): boolean => {
    if (entry.status !== "reachable" || entry.endpointUrl !== endpointUrl) return false
    if (index.beat(entry, nowMs)) commitDue.unsafeOpen()
    return true
  }

  /** A heartbeat: in memory only, unless the endpoint moved or the neuron comes back from `down`. */
  const heartbeat = (entry: NeuronEntry, endpointUrl: string): Effect.Effect<number, NotRegistered> =>
    Effect.flatMap(
      Clock.currentTimeMillis,
      (nowMs) => beatInMemory(entry, endpointUrl, nowMs) ? Effect.succeed(nowMs) : changedHeartbeat(entry, endpointUrl)
    )

  const changedHeartbeat = Effect.fn("RegistryStore.heartbeat")(function*(entry: NeuronEntry, endpointUrl: string) {
    const { nowMs, wasDown } = yield* locked(Effect.gen(function*() {
      // The sweep may have deregistered it while this request waited for the lock.
      if (entry.status === "deregistered") {
        return yield* new NotRegistered({ message: "this registration was deregistered; register again" })
      }
      const nowMs = yield* Clock.currentTimeMillis
      yield* sql`UPDATE neurons SET ${
        sql.update({ neuron_endpoint_url: endpointUrl, status: "reachable", last_heartbeat_at: nowMs })
      } WHERE registration_id = ${entry.registrationId}`
      const wasDown = entry.status === "down"
      entry.endpointUrl = endpointUrl
      entry.lastBeatText = undefined
      entry.lastHeartbeatMs = nowMs
      index.setStatus(entry, "reachable")
      return { nowMs, wasDown }
    }))
    if (wasDown) yield* recovered(entry, nowMs, "heartbeat resumed: restored to reachable")
    return nowMs
  }, Effect.catchTag("SqlError", Effect.die))

  /** `DELETE /v1/neurons/{id}`: the neuron leaves; its token then answers 404. */
  const deregister = Effect.fn("RegistryStore.deregister")(function*(entry: NeuronEntry) {
    yield* locked(Effect.gen(function*() {
      if (entry.status === "deregistered") return
      const nowMs = yield* Clock.currentTimeMillis
      yield* sql`UPDATE neurons SET status = 'deregistered', deregistered_at = ${nowMs}
          WHERE registration_id = ${entry.registrationId}`
      index.setStatus(entry, "deregistered")
    }))
    yield* Effect.logInfo("neuron deregistered itself").pipe(
      Effect.annotateLogs({ registration_id: entry.registrationId })
    )
  }, Effect.orDie)

  /** Applies the transitions due now (one batched write) and appends their alerts. */
  const sweep = Effect.fn("RegistryStore.sweep")(function*() {
    const { nowMs, transitions } = yield* locked(Effect.gen(function*() {
      const nowMs = yield* Clock.currentTimeMillis
      const transitions = index.sweep(nowMs)
      if (transitions.length > 0) {
        const batch = JSON.stringify(transitions.map((t) => [t.entry.seq, t.to]))
        yield* sql`WITH batch AS (SELECT value ->> 0 AS seq, value ->> 1 AS status FROM json_each(${batch}))
            UPDATE neurons SET status = batch.status,
              deregistered_at = CASE WHEN batch.status = 'deregistered' THEN ${nowMs} ELSE NULL END
            FROM batch WHERE neurons.seq = batch.seq`.pipe(
          // Not written: undo in memory, so the next sweep finds the same transitions again.
          Effect.tapError(() => Effect.sync(() => transitions.forEach((t) => index.setStatus(t.entry, t.from))))
        )
      }
      return { nowMs, transitions }
    }))
    yield* alerts.append(Alert.fromTransitions(transitions, nowMs))
    return { nowMs, transitions: transitions.length }
  })

  /** Writes the heartbeat times recorded since the last flush, in one statement. */
  const flush = locked(Effect.suspend(() => {
    const pairs = index.takeDirty()
    if (pairs.length === 0) return Effect.void
    // Into the narrow `heartbeats` table, keyed by `seq` (its rowid): few pages, no index to search.
    return sql`INSERT INTO heartbeats (seq, last_heartbeat_at)
        SELECT value ->> 0, value ->> 1 FROM json_each(${JSON.stringify(pairs)}) WHERE true
        ON CONFLICT (seq) DO UPDATE SET last_heartbeat_at = excluded.last_heartbeat_at`.pipe(
      Effect.asVoid,
      Effect.tapError(() => Effect.sync(() => (index.restoreDirty(pairs), commitDue.unsafeOpen())))
    )
  })).pipe(Effect.withTracerEnabled(false))

  yield* Effect.addFinalizer(() => flush.pipe(Effect.catchAllCause(Effect.logError)))
  yield* commitDue.await.pipe(
    Effect.zipRight(commitDue.close),
    Effect.zipRight(Effect.sleep(FLUSH_EVERY)),
    Effect.zipRight(flush),
    Effect.catchAllCause((cause) =>
      Effect.logError("heartbeat group commit failed; will retry").pipe(
        Effect.annotateLogs("reason", describeCause(cause))
      )
    ),
    Effect.forever,
    Effect.annotateLogs({ service: "RegistryStore" }),
    Effect.forkScoped
  )

  const listLive = (query: LiveQuery) =>
    Effect.gen(function*() {
      const clauses = [sql`status <> 'deregistered'`, sql`seq > ${query.after}`]
      if (query.organizationNpi !== undefined) clauses.push(sql`organization_npi = ${query.organizationNpi}`)
      if (query.status !== undefined) clauses.push(sql`status = ${query.status}`)
      const rows = yield* sql<{ seq: number; registration_id: string }>`SELECT seq, registration_id FROM neurons
          WHERE ${sql.and(clauses)} ORDER BY seq LIMIT ${query.limit + 1}`.pipe(Effect.orDie)
      const page = rows.slice(0, query.limit)
      const entries: Array<NeuronEntry> = []
      for (const row of page) {
        const entry = index.get(row.registration_id)
        // Skips a row the sweep changed since SQLite answered (the index is the newer of the two).
        if (entry === undefined || entry.status === "deregistered") continue
        if (query.status !== undefined && entry.status !== query.status) continue
        entries.push(entry)
      }
      const last = page[page.length - 1]
      return { entries, nextAfter: rows.length > query.limit && last !== undefined ? last.seq : undefined }
    })

  const inMemory: InMemoryBeats = { check, beatInMemory, heartbeat }

  return {
    backend: "sqlite",
    index,
    register,
    authorize,
    heartbeat,
    answerHeartbeat: HeartbeatFastPath.answerInMemory(inMemory),
    deregister,
    sweep: () => Effect.map(sweep(), (result) => ({ ...result, swept: true })),
    flush,
    counts: Effect.sync(() => index.counts()),
    shortestIntervalS: Effect.sync(() => index.shortestIntervalS()),
    intervalChanged: Queue.take(intervalChanges),
    replanEveryMs: undefined,
    get: (registrationId) => Effect.sync(() => index.get(registrationId)),
    liveByOrganization: (npi) => Effect.sync(() => index.liveByOrganization(npi)),
    listLive,
    sharedLastSweepAt: undefined
  } satisfies RegistryStoreShape
})

/** The SQLite store as a layer. */
export const layer = Layer.scoped(RegistryStore, make)

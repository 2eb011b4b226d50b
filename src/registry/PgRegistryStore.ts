/**
 * The registry's store on PostgreSQL, for any number of instances on one database. The database is the only
 * state: nothing about a registration is kept in memory, so a token issued through one instance works on all
 * and a write through one is seen by the next request to any other. Races are settled by the database:
 *
 * - a registration is one `INSERT ... ON CONFLICT DO NOTHING` against the unique index of live organizations
 *   (two at once: one row, the other `409`); with enrollment, a transaction locks the live row (`FOR UPDATE`)
 *   and rotates it, or inserts, retrying once when a concurrent insert won;
 * - a heartbeat is one `UPDATE` that checks the token, the status and moves the time (a HOT update: no index
 *   column changes); only a failed one asks why (401, 403 or 404);
 * - the sweep is one set-based statement (find, transition and write the alerts as rows), run only by the
 *   holder of the sweeper's lease (a row with an expiry, renewed by each sweep), so one instance sweeps at a
 *   time and each transition has exactly one alert, whichever instance swept. The sweeping instance also
 *   appends the alerts to the JSONL file in its own data folder.
 *
 * Every statement goes through `Availability.guard`: a database out of reach answers `503 UNAVAILABLE`.
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
import type { RegisterNeuronRequest } from "../protocol/AxonApi.js"
import type { Unavailable } from "../protocol/AxonApi.js"
import { AlreadyRegistered, Forbidden, NotRegistered, Unauthorized } from "../protocol/AxonApi.js"
import type { AlertRecord } from "./Alerts.js"
import * as Alert from "./Alerts.js"
import { Alerts } from "./Alerts.js"
import { Availability } from "./Availability.js"
import * as HeartbeatFastPath from "./HeartbeatFastPath.js"
import type { NeuronEntry } from "./NeuronIndex.js"
import * as NeuronRows from "./NeuronRows.js"
import { RegistrySettings } from "./RegistrySettings.js"
import type { LiveQuery, Registration, RegistryStoreShape } from "./RegistryStore.js"
import { DEFAULT_INTERVAL_S, enrollment, groupCommitRegistrations, RegistryStore } from "./RegistryStore.js"
import * as Tokens from "./Tokens.js"

/** The sweeper's lease lasts this many sweep periods: a dead sweeper is replaced at the second boundary. */
export const LEASE_PERIODS = 1.5

const COLUMNS = `seq, registration_id, organization_npi, organization_name, organization_type, neuron_endpoint_url,
  heartbeat_interval_s, token_hash, status, last_heartbeat_at, registered_at`

/** What a registration writes, whether it rotates the live row or inserts a new one. */
type RegistrationFields = {
  readonly organization_name: string
  readonly organization_type: string
  readonly neuron_endpoint_url: string
  readonly heartbeat_interval_s: number
  readonly token_hash: string
  readonly status: "reachable"
  readonly last_heartbeat_at: number
}

/** A registration waiting for the group commit: checked, its token made. */
interface PendingRegistration {
  readonly request: RegisterNeuronRequest
  readonly enrolled: boolean
  readonly fields: RegistrationFields
}

/** What a committed registration did. */
interface Outcome {
  readonly entry: NeuronEntry
  readonly created: boolean
  readonly wasDown: boolean
  readonly nowMs: number
}

const deregistered = () => new NotRegistered({ message: "this registration was deregistered; register again" })

/** The PostgreSQL store (needs a migrated PostgreSQL `SqlClient` and `Availability.layerPg`). */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const alerts = yield* Alerts
  const { guard } = yield* Availability
  const { enrollmentHash } = yield* RegistrySettings
  const columns = sql.literal(COLUMNS)
  // Who holds the sweeper's lease: one id per running registry.
  const instanceId = Crypto.randomUUID()
  const intervalChanges = yield* Queue.sliding<void>(1)

  yield* Effect.logInfo("registry on PostgreSQL").pipe(Effect.annotateLogs({
    instance: instanceId,
    enrollment: Option.isSome(enrollmentHash) ? "required" : "off (development mode: a duplicate NPI is 409)"
  }))

  /** Writes alerts as rows (served by every instance) and to this instance's JSONL file. */
  const recordAlerts = (records: ReadonlyArray<AlertRecord>) =>
    records.length === 0 ? Effect.void : Effect.zipRight(
      sql`INSERT INTO alerts ${
        sql.insert(records.map((a) => ({
          alert_type: a.alert_type,
          registration_id: a.registration_id,
          organization_npi: a.organization_npi,
          missed_beats: a.missed_beats,
          last_seen: Date.parse(a.last_seen),
          action: a.action,
          ts: Date.parse(a.ts)
        })))
      }`,
      alerts.append(records)
    )

  const recovered = (entry: NeuronEntry, nowMs: number, action: string) =>
    recordAlerts([Alert.make("neuron_recovered", entry, 0, new Date(nowMs).toISOString(), action)])

  /** New rows, in one statement; the rows that went in (a live organization's is left out: `409`). */
  const insert = (
    items: ReadonlyArray<{ readonly request: RegisterNeuronRequest; readonly fields: RegistrationFields }>,
    nowMs: number
  ) => {
    const rows = items.map(({ fields, request }) => ({
      registration_id: Crypto.randomUUID(),
      organization_npi: request.organization_npi,
      ...fields,
      registered_at: nowMs
    }))
    // The row is known but for its `seq`: only that comes back (a narrower answer to decode).
    return sql<{ seq: number; registration_id: string }>`INSERT INTO neurons ${sql.insert(rows)}
      ON CONFLICT (organization_npi) WHERE status <> 'deregistered' DO NOTHING RETURNING seq, registration_id`.pipe(
      Effect.map((inserted) => {
        const seqs = new Map(inserted.map((row) => [row.registration_id, row.seq]))
        return rows.map((row): NeuronRows.NeuronRow | undefined => {
          const seq = seqs.get(row.registration_id)
          return seq === undefined ? undefined : { ...row, seq }
        })
      })
    )
  }

  const alreadyRegistered = () =>
    new AlreadyRegistered({
      message: "organization_npi is already registered; re-registering needs the enrollment token"
    })

  /** With the enrollment token, inside a transaction: rotates the live registration, or inserts a new one. */
  const rotateOrInsert = (item: PendingRegistration, nowMs: number) =>
    Effect.gen(function*() {
      // Twice at most: when a concurrent registration inserted the row between our look and our insert, the
      // second look finds (and locks) it.
      for (let attempt = 0; attempt < 2; attempt++) {
        const [live] = yield* sql<NeuronRows.NeuronRow>`SELECT ${columns} FROM neurons
          WHERE organization_npi = ${item.request.organization_npi} AND status <> 'deregistered' FOR UPDATE`
        if (live !== undefined) {
          const [row] = yield* sql<NeuronRows.NeuronRow>`UPDATE neurons SET ${sql.update({ ...item.fields })}
            WHERE seq = ${live.seq} RETURNING ${columns}`
          return { entry: NeuronRows.toEntry(row!), created: false, wasDown: live.status === "down" }
        }
        const [row] = yield* insert([item], nowMs)
        if (row !== undefined) return { entry: NeuronRows.toEntry(row), created: true, wasDown: false }
      }
      return yield* Effect.dieMessage("registration lost two races in a row")
    })

  /**
   * Commits a batch of registrations (group commit): one transaction for several, answered after it commits.
   * Without enrollment the new rows go in one `INSERT ... ON CONFLICT DO NOTHING` (an organization already live, or
   * twice in the batch, gets its own `409`); with it each registration rotates or inserts in turn, in the order
   * of their NPIs so that two instances' batches lock rows in the same order. A batch that fails as a whole is
   * retried one by one by the group commit.
   */
  const commitRegistrations = (items: ReadonlyArray<PendingRegistration>) =>
    Effect.gen(function*() {
      const nowMs = yield* Clock.currentTimeMillis
      const outcomes: Array<Exit.Exit<Outcome, AlreadyRegistered | Unavailable>> = new Array(items.length)
      const fresh = items.flatMap((item, i) => item.enrolled ? [] : [i])
      const enrolled = items.flatMap((item, i) => item.enrolled ? [i] : []).sort((a, b) =>
        items[a]!.request.organization_npi.localeCompare(items[b]!.request.organization_npi)
      )
      const write = Effect.gen(function*() {
        if (fresh.length > 0) {
          const rows = yield* insert(fresh.map((i) => items[i]!), nowMs)
          rows.forEach((row, k) => {
            outcomes[fresh[k]!] = row === undefined
              ? Exit.fail(alreadyRegistered())
              : Exit.succeed({ entry: NeuronRows.toEntry(row), created: true, wasDown: false, nowMs })
          })
        }
        for (const i of enrolled) {
          outcomes[i] = Exit.succeed({ ...(yield* rotateOrInsert(items[i]!, nowMs)), nowMs })
        }
        return outcomes
      })
      // A lone new registration is one statement; anything more is a transaction.
      return yield* guard(items.length === 1 && fresh.length === 1 ? write : sql.withTransaction(write))
    })

  const commitRegistration = yield* groupCommitRegistrations(commitRegistrations, 4)

  // The shortest interval the monitor last planned with: only a registration with a shorter one needs to wake it
  // (a wake re-plans, a measurable part of a registration when the whole network registers at once).
  let plannedShortestS: number | undefined

  /**
   * `POST /v1/neurons`, answered once committed (group commit). Untraced: the request has its span; one more per
   * registration cost a measurable share of it (issue 14).
   */
  const register = Effect.fnUntraced(function*(
    request: RegisterNeuronRequest,
    authorization: string | undefined
  ) {
    const enrolled = yield* enrollment(enrollmentHash, authorization)
    const token = Tokens.generate()
    const nowMs = yield* Clock.currentTimeMillis
    const fields: RegistrationFields = {
      organization_name: request.organization_name,
      organization_type: request.organization_type,
      neuron_endpoint_url: request.neuron_endpoint_url,
      heartbeat_interval_s: request.heartbeat_interval_s ?? DEFAULT_INTERVAL_S,
      token_hash: Tokens.hash(Redacted.value(token)).toString("hex"),
      status: "reachable" as const,
      last_heartbeat_at: nowMs
    }
    const outcome = yield* commitRegistration({ request, enrolled, fields })
    if (plannedShortestS === undefined || fields.heartbeat_interval_s < plannedShortestS) {
      yield* Queue.offer(intervalChanges, undefined)
    }
    if (outcome.wasDown) {
      yield* guard(recovered(outcome.entry, outcome.nowMs, "re-registered: restored to reachable"))
    }
    yield* Effect.logInfo(outcome.created ? "neuron registered" : "neuron re-registered: bearer token rotated").pipe(
      Effect.annotateLogs({
        registration_id: outcome.entry.registrationId,
        organization_npi: outcome.entry.organizationNpi
      })
    )
    return { entry: outcome.entry, token, created: outcome.created } satisfies Registration
  })

  /** Why a token does not act on a registration, or the registration when it does (one indexed read). */
  const authorize = (
    registrationId: string,
    authorization: string | undefined
  ): Effect.Effect<NeuronEntry, Unauthorized | Forbidden | NotRegistered | Unavailable> => {
    const token = Tokens.parseBearer(authorization)
    if (token === undefined) {
      return Effect.fail(new Unauthorized({ message: "a bearer token (43 base64url characters) is required" }))
    }
    const tokenHash = Tokens.hash(token).toString("hex")
    return guard(sql<NeuronRows.NeuronRow>`SELECT ${columns} FROM neurons
      WHERE registration_id = ${registrationId} OR token_hash = ${tokenHash}`).pipe(
      Effect.flatMap((rows): Effect.Effect<NeuronEntry, Unauthorized | Forbidden | NotRegistered> => {
        const own = rows.find((row) => row.registration_id === registrationId && row.token_hash === tokenHash)
        if (own !== undefined) {
          return own.status === "deregistered" ? Effect.fail(deregistered()) : Effect.succeed(NeuronRows.toEntry(own))
        }
        return rows.some((row) => row.token_hash === tokenHash && row.status !== "deregistered")
          ? Effect.fail(new Forbidden({ message: "this bearer token belongs to another registration" }))
          : Effect.fail(new Unauthorized({ message: "unknown bearer token" }))
      })
    )
  }

  /**
   * A heartbeat in one statement: the token, the registration's liveness and the new time, endpoint and status.
   * The old status comes from the locked row, so a neuron back from `down` gets exactly one recovery alert.
   */
  const beatStatement = (registrationId: string, tokenHash: string, endpointUrl: string, nowMs: number) =>
    sql<{ was: string; organization_npi: string; last_heartbeat_at: number }>`UPDATE neurons n
      SET last_heartbeat_at = ${nowMs}, neuron_endpoint_url = ${endpointUrl}, status = 'reachable'
      FROM (SELECT seq, status AS was FROM neurons WHERE registration_id = ${registrationId}
        AND token_hash = ${tokenHash} AND status <> 'deregistered' FOR UPDATE) old
      WHERE n.seq = old.seq
      RETURNING old.was, n.organization_npi, n.last_heartbeat_at`

  const afterBeat = (
    registrationId: string,
    row: { was: string; organization_npi: string },
    nowMs: number
  ): Effect.Effect<number, Unavailable> =>
    row.was === "down"
      ? Effect.as(
        guard(recordAlerts([{
          alert_type: "neuron_recovered",
          registration_id: registrationId,
          organization_npi: row.organization_npi,
          missed_beats: 0,
          last_seen: new Date(nowMs).toISOString(),
          action: "heartbeat resumed: restored to reachable",
          ts: new Date(nowMs).toISOString()
        }])),
        nowMs
      )
      : Effect.succeed(nowMs)

  /** The heartbeat route: one statement when it succeeds; a failed one is then told apart by `authorize`. */
  const beat = (
    registrationId: string,
    authorization: string | undefined,
    endpointUrl: string
  ): Effect.Effect<number, Unauthorized | Forbidden | NotRegistered | Unavailable> => {
    const token = Tokens.parseBearer(authorization)
    if (token === undefined) return authorize(registrationId, authorization).pipe(Effect.as(0))
    const tokenHash = Tokens.hash(token).toString("hex")
    return Effect.flatMap(
      Clock.currentTimeMillis,
      (nowMs) =>
        guard(beatStatement(registrationId, tokenHash, endpointUrl, nowMs)).pipe(
          Effect.flatMap(([row]) =>
            row !== undefined
              ? afterBeat(registrationId, row, nowMs)
              // Not beaten: the token or the registration says why (and a token just rotated is 401).
              : Effect.flatMap(authorize(registrationId, authorization), () => Effect.fail(deregistered()))
          )
        )
    )
  }

  const heartbeat = (entry: NeuronEntry, endpointUrl: string): Effect.Effect<number, NotRegistered | Unavailable> =>
    Effect.flatMap(
      Clock.currentTimeMillis,
      (nowMs) =>
        guard(
          beatStatement(entry.registrationId, Buffer.from(entry.tokenKey, "latin1").toString("hex"), endpointUrl, nowMs)
        )
          .pipe(
            Effect.flatMap(([row]): Effect.Effect<number, NotRegistered | Unavailable> =>
              row === undefined ? Effect.fail(deregistered()) : afterBeat(entry.registrationId, row, nowMs)
            )
          )
    )

  const deregister = Effect.fn("RegistryStore.deregister")(function*(entry: NeuronEntry) {
    const nowMs = yield* Clock.currentTimeMillis
    yield* guard(sql`UPDATE neurons SET status = 'deregistered', deregistered_at = ${nowMs}
      WHERE seq = ${entry.seq} AND status <> 'deregistered'`)
    yield* Effect.logInfo("neuron deregistered itself").pipe(
      Effect.annotateLogs({ registration_id: entry.registrationId })
    )
  })

  /**
   * Takes or renews the sweeper's lease; true when this instance holds it. A lease whose holder stopped
   * renewing it (killed, partitioned) is free once expired.
   */
  const acquireLease = (nowMs: number, periodMs: number) =>
    Effect.map(
      sql<{ holder: string }>`INSERT INTO sweeper_lease (id, holder, expires_at)
        VALUES (1, ${instanceId}, ${nowMs + Math.ceil(LEASE_PERIODS * periodMs)})
        ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
        WHERE sweeper_lease.holder = excluded.holder OR sweeper_lease.expires_at <= ${nowMs}
        RETURNING holder`,
      (rows) => rows.length === 1
    )

  /**
   * One set-based statement: the lease is checked (and the sweep's time recorded) in it, the due neurons moved
   * by one `UPDATE` (one scan of the table; at most one transition each), and an alert row written per
   * transition. It was a `SELECT ... FOR UPDATE` of the due rows joined back to the table: PostgreSQL estimated a
   * third of the table due and hashed the whole table for the join, 656 ms over 100 000 neurons (issue 14).
   */
  const sweepStatement = (nowMs: number) =>
    sql<
      {
        alert_type: AlertRecord["alert_type"]
        registration_id: string
        organization_npi: string
        missed_beats: number
        last_seen: number
        action: string
      }
    >`WITH lease AS (
        UPDATE sweeper_lease SET last_sweep_at = ${nowMs}::bigint
        WHERE id = 1 AND holder = ${instanceId} AND expires_at > ${nowMs}::bigint RETURNING id
      ), changed AS (
        -- One pass over the live rows: each due neuron moves by at most one transition (a neuron already down
        -- moves only when it is due deregistration). A heartbeat that commits first is seen by the re-check
        -- READ COMMITTED makes of a row it waited for, so a neuron that just beat is not transitioned.
        UPDATE neurons SET
          status = CASE WHEN ${nowMs}::bigint - last_heartbeat_at > 3000 * heartbeat_interval_s::bigint
            THEN 'deregistered' ELSE 'down' END,
          deregistered_at = CASE WHEN ${nowMs}::bigint - last_heartbeat_at > 3000 * heartbeat_interval_s::bigint
            THEN ${nowMs}::bigint ELSE NULL END
        WHERE status <> 'deregistered' AND ${nowMs}::bigint - last_heartbeat_at > 2000 * heartbeat_interval_s::bigint
          AND (status = 'reachable' OR ${nowMs}::bigint - last_heartbeat_at > 3000 * heartbeat_interval_s::bigint)
          AND EXISTS (SELECT 1 FROM lease)
        RETURNING registration_id, organization_npi, last_heartbeat_at, status AS became,
          (${nowMs}::bigint - last_heartbeat_at) / (1000 * heartbeat_interval_s::bigint) AS missed
      )
      INSERT INTO alerts (alert_type, registration_id, organization_npi, missed_beats, last_seen, action, ts)
      SELECT CASE WHEN became = 'down' THEN 'neuron_down' ELSE 'neuron_deregistered' END,
        registration_id, organization_npi, missed, last_heartbeat_at,
        CASE WHEN became = 'down' THEN ${DOWN_ACTION}::text ELSE ${DEREGISTERED_ACTION}::text END,
        ${nowMs}::bigint
      FROM changed
      RETURNING alert_type, registration_id, organization_npi, missed_beats, last_seen, action`

  const sweep = (periodMs: number) =>
    Effect.gen(function*() {
      const nowMs = yield* Clock.currentTimeMillis
      if (!(yield* guard(acquireLease(nowMs, periodMs)))) return { nowMs, transitions: 0, swept: false }
      const rows = yield* guard(sweepStatement(nowMs))
      const ts = new Date(nowMs).toISOString()
      // The rows are the record; the JSONL file of the sweeping instance is for its operator's `tail -f`.
      yield* alerts.append(rows.map((row) => ({ ...row, last_seen: new Date(row.last_seen).toISOString(), ts })))
      return { nowMs, transitions: rows.length, swept: true }
    }).pipe(Effect.withSpan("RegistryStore.sweep"))

  // A clean stop hands the lease on at once: another instance sweeps at its next boundary.
  yield* Effect.addFinalizer(() =>
    sql`UPDATE sweeper_lease SET expires_at = 0 WHERE id = 1 AND holder = ${instanceId}`.pipe(Effect.ignore)
  )

  const counts = guard(
    sql<{ reachable: number; down: number }>`SELECT count(*) FILTER (WHERE status = 'reachable') AS reachable,
      count(*) FILTER (WHERE status = 'down') AS down FROM neurons WHERE status <> 'deregistered'`
  ).pipe(Effect.map(([row]) => ({ reachable: row?.reachable ?? 0, down: row?.down ?? 0 })))

  const shortestIntervalS = guard(
    sql<{ s: number | null }>`SELECT min(heartbeat_interval_s) AS s FROM neurons WHERE status <> 'deregistered'`
  ).pipe(Effect.map(([row]) => (plannedShortestS = row?.s ?? undefined)))

  const one = (rows: ReadonlyArray<NeuronRows.NeuronRow>) =>
    rows.length === 0 ? undefined : NeuronRows.toEntry(rows[0]!)

  const listLive = (query: LiveQuery) =>
    Effect.gen(function*() {
      const clauses = [sql`status <> 'deregistered'`, sql`seq > ${query.after}`]
      if (query.organizationNpi !== undefined) clauses.push(sql`organization_npi = ${query.organizationNpi}`)
      if (query.status !== undefined) clauses.push(sql`status = ${query.status}`)
      const rows = yield* guard(sql<NeuronRows.NeuronRow>`SELECT ${columns} FROM neurons WHERE ${sql.and(clauses)}
        ORDER BY seq LIMIT ${query.limit + 1}`)
      const page = rows.slice(0, query.limit)
      const last = page[page.length - 1]
      return {
        entries: page.map(NeuronRows.toEntry),
        nextAfter: rows.length > query.limit && last !== undefined ? last.seq : undefined
      }
    })

  return {
    backend: "postgres",
    index: undefined,
    register,
    authorize,
    heartbeat,
    answerHeartbeat: HeartbeatFastPath.answerWithStatement(beat),
    deregister,
    sweep,
    flush: Effect.void,
    counts,
    shortestIntervalS,
    intervalChanged: Queue.take(intervalChanges),
    // A registration through another instance may shorten the period: every instance re-reads it each second,
    // so all of them agree on the boundaries (and on the lease's length) within a second.
    replanEveryMs: 1_000,
    get: (registrationId) =>
      guard(sql<NeuronRows.NeuronRow>`SELECT ${columns} FROM neurons WHERE registration_id = ${registrationId}`).pipe(
        Effect.map(one)
      ),
    liveByOrganization: (npi) =>
      guard(
        sql<NeuronRows.NeuronRow>`SELECT ${columns} FROM neurons
          WHERE organization_npi = ${npi} AND status <> 'deregistered'`
      ).pipe(Effect.map(one)),
    listLive,
    sharedLastSweepAt: guard(sql<{ at: number | null }>`SELECT last_sweep_at AS at FROM sweeper_lease WHERE id = 1`)
      .pipe(Effect.map(([row]) => Option.fromNullable(row?.at)))
  } satisfies RegistryStoreShape
})

const DOWN_ACTION = "marked down: no heartbeat for over 2 intervals"
const DEREGISTERED_ACTION = "deregistered: no heartbeat for over 3 intervals"

/** The PostgreSQL store as a layer. */
export const layer = Layer.scoped(RegistryStore, make)

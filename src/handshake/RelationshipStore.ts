/**
 * RelationshipStore: the consent relationships a completed handshake creates (table `relationships` of
 * `NeuronMigrations`). At most one active relationship per (patient, provider) is enforced by the database
 * (the unique partial index `relationships_active`), so two handshakes racing for the same pair leave one row:
 * the insert that loses the race gets the winner's row back instead (one upsert statement, see `upsert`).
 * A relationship ends once (`end`: revoked by the patient or terminated by the organization), in one transaction
 * with its lifecycle event and its audit entry; the end is permanent (PROTOCOL.md section 8).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { NeuronMetrics, timeTransaction } from "../observability/NeuronMetrics.js"
import * as GroupCommit from "../sql/GroupCommit.js"
import { withPreparedTransaction } from "../sql/Sqlite.js"
import { type AuditInput, AuditLog } from "../store/AuditLog.js"
import {
  RelationshipEvent,
  RelationshipRevoked,
  relationshipStream,
  RelationshipTerminated
} from "../store/RelationshipEvent.js"

/** A stored relationship, decoded (`consented_actions` is stored as a JSON array). */
export const Relationship = Schema.Struct({
  relationship_id: Schema.String,
  patient_agent_id: Schema.String,
  provider_npi: Schema.String,
  /** The patient's Ed25519 public key, canonical base64url. */
  patient_public_key: Schema.String,
  consented_actions: Schema.parseJson(Schema.Array(Schema.String)),
  status: Schema.Literal("active", "revoked", "terminated"),
  created_at: Schema.String,
  updated_at: Schema.String,
  /** When it was revoked or terminated; null while active. */
  ended_at: Schema.NullOr(Schema.String),
  /** Why it ended (the organization's reason, or that the patient revoked it); null while active. */
  end_reason: Schema.NullOr(Schema.String)
})
/** @see Relationship */
export type Relationship = typeof Relationship.Type

/** What a completed handshake asks for. */
export interface EstablishRequest {
  readonly patient_agent_id: string
  readonly provider_npi: string
  readonly patient_public_key: string
  readonly consented_actions: ReadonlyArray<string>
}

/** What `establish` writes with the relationship, and when it gives up. */
export interface EstablishOptions<E> {
  /** The audit entries written with the relationship, in its transaction. */
  readonly audit?: (established: Established) => ReadonlyArray<AuditInput>
  /**
   * Checked just before the commit: an error abandons this completion (nothing of it is kept) and is its outcome.
   * Synchronous, so that nothing can happen between the check and the commit.
   */
  readonly beforeCommit?: () => E | undefined
}

/** The most completions in one transaction (the audit insert takes 2 rows of 8 parameters per completion). */
const MAX_BATCH = 64

/** The outcome of `establish`: a new relationship, or the active one made earlier with the same key. */
export interface Established {
  readonly relationship_id: string
  readonly status: "new" | "existing"
}

/** The patient already has an active relationship with this provider, made with another key. */
export class RelationshipKeyMismatch extends Schema.TaggedError<RelationshipKeyMismatch>()("RelationshipKeyMismatch", {
  reason: Schema.Literal("key_mismatch"),
  message: Schema.String
}) {}

/** No relationship has this id. */
export class RelationshipNotFound extends Schema.TaggedError<RelationshipNotFound>()("RelationshipNotFound", {
  relationship_id: Schema.String,
  message: Schema.String
}) {}

/** How a relationship ends: who ends it, and what the audit entry and the event record. */
export type EndRequest =
  | {
    readonly status: "revoked"
    /** The time the patient signed. */
    readonly revoked_at: string
    /** The audit entry's extra details (the key's fingerprint). */
    readonly details?: Record<string, unknown>
  }
  | {
    readonly status: "terminated"
    readonly reason: string
    /** Who terminated it, for the audit entry (`operator` by default). */
    readonly actor?: string
  }

/** The outcome of `end`: `ended` by this call, or found already ended (by this kind of end or the other). */
export interface EndOutcome {
  readonly outcome: "ended" | "already_ended"
  readonly relationship: Relationship
}

/** The `end_reason` of a revocation: the patient gives no reason, the fact is the reason. */
export const REVOKED_BY_PATIENT = "revoked by the patient"

/** The stored `consented_actions` text as a list of strings; undefined when it is not one. */
const parseActions = (text: string): ReadonlyArray<string> | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    return Array.isArray(value) && value.every((a) => typeof a === "string") ? value : undefined
  } catch {
    return undefined
  }
}

/** The completion's statement (exported for `pnpm bench handshake --store`, which runs it on better-sqlite3). */
export const UPSERT = `INSERT INTO relationships
  (relationship_id, patient_agent_id, provider_npi, patient_public_key, consented_actions, status, created_at, updated_at)
  VALUES (?, ?, ?, ?, ?, 'active', ?, ?)
  ON CONFLICT (patient_agent_id, provider_npi) WHERE status = 'active' DO UPDATE SET
    updated_at = CASE WHEN json(relationships.consented_actions) = json(excluded.consented_actions)
      THEN relationships.updated_at ELSE excluded.updated_at END,
    consented_actions = CASE WHEN json(relationships.consented_actions) = json(excluded.consented_actions)
      THEN relationships.consented_actions ELSE excluded.consented_actions END
    WHERE relationships.patient_public_key = excluded.patient_public_key
  RETURNING relationship_id`

const FIND_ACTIVE_KEY = `SELECT relationship_id, patient_public_key, consented_actions FROM relationships
  WHERE patient_agent_id = ? AND provider_npi = ? AND status = 'active'`

const PairRequest = Schema.Struct({ patient_agent_id: Schema.String, provider_npi: Schema.String })

/** Builds the store on the host's SqlClient. */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const transaction = withPreparedTransaction(sql)
  const metrics = yield* Effect.serviceOption(NeuronMetrics)
  const audit = yield* AuditLog

  const findActive = SqlSchema.findOne({
    Request: PairRequest,
    Result: Relationship,
    execute: (r) =>
      sql`SELECT * FROM relationships
          WHERE patient_agent_id = ${r.patient_agent_id} AND provider_npi = ${r.provider_npi} AND status = 'active'`
  })
  // The handshake's hot path runs its statements on the transaction's connection directly (static text,
  // prepared once by the driver; see `withPreparedTransaction`), with no Schema encoding of a row it built itself.
  // One statement creates the relationship or, when an active one with the same key exists, brings it to the
  // consent just verified and returns it: the conflict target names the partial index (only an active
  // duplicate conflicts; any other constraint violation still fails loudly), and a key that differs updates
  // nothing and returns nothing. `updated_at` moves only when the actions change (compared as JSON values).
  const upsert = (connection: Connection, row: {
    readonly relationship_id: string
    readonly request: EstablishRequest
    readonly actions: string
    readonly now: string
  }) =>
    connection.execute(
      UPSERT,
      [
        row.relationship_id,
        row.request.patient_agent_id,
        row.request.provider_npi,
        row.request.patient_public_key,
        row.actions,
        row.now,
        row.now
      ],
      undefined
    ) as Effect.Effect<ReadonlyArray<{ relationship_id: string }>, SqlError>
  const findActiveKey = (connection: Connection, r: EstablishRequest) =>
    Effect.flatMap(
      connection.execute(FIND_ACTIVE_KEY, [r.patient_agent_id, r.provider_npi], undefined),
      (rows) => {
        const row = rows[0] as { relationship_id: unknown; patient_public_key: unknown; consented_actions: unknown }
        if (row === undefined) return Effect.succeed(Option.none())
        const actions = typeof row.consented_actions === "string" ? parseActions(row.consented_actions) : undefined
        if (
          typeof row.relationship_id !== "string" || typeof row.patient_public_key !== "string" ||
          actions === undefined
        ) {
          return Effect.dieMessage("relationships: an active row is undecodable")
        }
        return Effect.succeed(Option.some({
          relationship_id: row.relationship_id,
          patient_public_key: row.patient_public_key,
          consented_actions: actions
        }))
      }
    )
  const findAll = SqlSchema.findAll({
    Request: Schema.Struct({
      patient_agent_id: Schema.NullOr(Schema.String),
      provider_npi: Schema.NullOr(Schema.String)
    }),
    Result: Relationship,
    execute: (r) =>
      sql`SELECT * FROM relationships WHERE ${
        sql.and([
          r.patient_agent_id === null ? sql`1 = 1` : sql`patient_agent_id = ${r.patient_agent_id}`,
          r.provider_npi === null ? sql`1 = 1` : sql`provider_npi = ${r.provider_npi}`
        ])
      } ORDER BY created_at, relationship_id`
  })

  // One completion on the transaction's connection: the relationship established, or the mismatch it met (a
  // value, so that a batch can go on with its other completions: nothing was written for it).
  // Plain `flatMap`s rather than a generator: it runs once per completion, inside the group commit's transaction.
  const establishOn = (
    connection: Connection,
    request: EstablishRequest,
    now: string,
    actions = JSON.stringify(request.consented_actions),
    round = 0
  ): Effect.Effect<Established | RelationshipKeyMismatch, SqlError> => {
    // Two rounds at most: the second only if the conflicting row was revoked before it could be read.
    if (round === 2) {
      return Effect.dieMessage("relationships: the active relationship vanished twice while establishing")
    }
    const relationship_id = randomUUID()
    return Effect.flatMap(upsert(connection, { relationship_id, request, actions, now }), ([row]) => {
      if (row !== undefined) {
        return Effect.succeed<Established>({
          relationship_id: row.relationship_id,
          status: row.relationship_id === relationship_id ? "new" : "existing"
        })
      }
      // An active relationship with another key (or one revoked meanwhile: try again).
      return Effect.flatMap(findActiveKey(connection, request), (existing) =>
        Option.isNone(existing)
          ? establishOn(connection, request, now, actions, round + 1)
          : Effect.succeed(
            new RelationshipKeyMismatch({
              reason: "key_mismatch",
              message: "patient_public_key differs from the key of the existing relationship with this provider"
            })
          ))
    })
  }

  interface Pending {
    readonly request: EstablishRequest
    readonly options: EstablishOptions<unknown> | undefined
  }
  /** The completion's own end of a batch: abandoned just before the commit, or its audit entries. */
  const finish = (pending: Pending, established: Established) => {
    const refused = pending.options?.beforeCommit?.()
    return refused !== undefined
      ? Exit.fail(refused)
      : Exit.succeed(pending.options?.audit?.(established) ?? [])
  }
  const counted = (size: number) => Option.isSome(metrics) ? metrics.value.groupCommit("handshake", size) : undefined
  const single = (pending: Pending) =>
    transaction((connection) =>
      Effect.clockWith((clock) =>
        Effect.flatMap(
          establishOn(connection, pending.request, new Date(clock.unsafeCurrentTimeMillis()).toISOString()),
          (established): Effect.Effect<Established, unknown> => {
            if (established instanceof RelationshipKeyMismatch) return Effect.fail(established)
            const entries = finish(pending, established)
            if (Exit.isFailure(entries)) return Effect.failCause(entries.cause)
            return Effect.map(audit.appendAll(entries.value, connection), () => {
              counted(1)
              return established
            })
          }
        )
      )
    ).pipe(timeTransaction(metrics, "handshake"))
  // All or nothing: a completion abandoned before the commit fails the batch, and each is then written alone
  // (`single`), where it fails by itself. A key mismatch writes nothing: it is that completion's outcome.
  // Plain `flatMap`s, one completion after another, rather than a generator: this runs for every batch.
  const batch = (pendings: ReadonlyArray<Pending>) =>
    transaction((connection) =>
      Effect.clockWith((clock) => {
        const now = new Date(clock.unsafeCurrentTimeMillis()).toISOString()
        const outcomes: Array<Exit.Exit<Established, unknown>> = []
        const entries: Array<AuditInput> = []
        const from = (i: number): Effect.Effect<ReadonlyArray<Exit.Exit<Established, unknown>>, unknown> => {
          if (i === pendings.length) {
            return Effect.map(audit.appendAll(entries, connection), () => {
              counted(pendings.length)
              return outcomes
            })
          }
          const pending = pendings[i]!
          return Effect.flatMap(establishOn(connection, pending.request, now), (established) => {
            if (established instanceof RelationshipKeyMismatch) {
              outcomes.push(Exit.fail(established))
              return from(i + 1)
            }
            const own = finish(pending, established)
            if (Exit.isFailure(own)) return Effect.failCause(own.cause)
            entries.push(...own.value)
            outcomes.push(Exit.succeed(established))
            return from(i + 1)
          })
        }
        return from(0)
      })
    ).pipe(timeTransaction(metrics, "handshake"))
  // The handshake's completions, group-committed: under load one transaction (one BEGIN / COMMIT, one audit
  // insert, the WAL's frames written and synced once) carries all the completions that arrived while the last
  // one was being written.
  const completions = yield* GroupCommit.make({
    single: (pending: Pending) =>
      single(pending).pipe(Effect.catchIf((e): e is SqlError => e instanceof SqlError, Effect.die)),
    batch,
    maxBatch: MAX_BATCH
  })

  /**
   * Creates the relationship, or returns the active one for the same patient, provider and key. The latest
   * consent governs: an existing relationship takes the consented actions of the token just verified.
   * `options.audit` gives the audit entries written in the same transaction (one commit for both), and
   * `options.beforeCommit`, checked just before the commit, abandons the completion (nothing of it is kept).
   * Completions that arrive together share one transaction (`GroupCommit`); each gets its own outcome.
   */
  const establish = <E = never>(
    request: EstablishRequest,
    options?: EstablishOptions<E>
  ): Effect.Effect<Established, RelationshipKeyMismatch | E> =>
    // No span of its own: it runs once per handshake, inside the handshake's.
    completions.submit({ request, options }) as Effect.Effect<Established, RelationshipKeyMismatch | E>

  /**
   * `establish` without a fiber: the completion joins the next transaction the same way, and `onOutcome` is
   * called with its outcome after the commit (the handshake answers from there). `onOutcome` must not throw.
   */
  const establishNow = <E = never>(
    request: EstablishRequest,
    options: EstablishOptions<E> | undefined,
    onOutcome: (outcome: Exit.Exit<Established, RelationshipKeyMismatch | E>) => void
  ): void =>
    completions.offer(
      { request, options },
      onOutcome as (outcome: Exit.Exit<Established, unknown>) => void
    )

  /** The relationships, optionally only one patient's or one provider's, oldest first. */
  const list = (filter?: { readonly patient_agent_id?: string; readonly provider_npi?: string }) =>
    findAll({ patient_agent_id: filter?.patient_agent_id ?? null, provider_npi: filter?.provider_npi ?? null }).pipe(
      Effect.orDie,
      Effect.withSpan("RelationshipStore.list")
    )

  /** The active relationship of a patient with a provider. */
  const active = (patient_agent_id: string, provider_npi: string) =>
    findActive({ patient_agent_id, provider_npi }).pipe(Effect.orDie, Effect.withSpan("RelationshipStore.active"))

  const findById = SqlSchema.findOne({
    Request: Schema.String,
    Result: Relationship,
    execute: (id) => sql`SELECT * FROM relationships WHERE relationship_id = ${id}`
  })
  const decodeRow = Schema.decodeUnknown(Relationship)
  const encodeEvent = Schema.encode(Schema.parseJson(RelationshipEvent))

  /** One relationship by id. */
  const get = (relationship_id: string) =>
    findById(relationship_id).pipe(Effect.orDie, Effect.withSpan("RelationshipStore.get"))

  /**
   * Ends an active relationship: the row, its lifecycle event (stream `relationship:<id>`, version 1) and its
   * audit entry in one transaction. A relationship already ended is returned as it is (`already_ended`), with
   * nothing written: the caller decides whether that is a repeat (a second revocation) or a conflict.
   * The conditional UPDATE decides races: of two ends, or of an end and a handshake's upsert, the one that
   * commits first wins and the other sees its result.
   */
  const end = (relationship_id: string, request: EndRequest): Effect.Effect<EndOutcome, RelationshipNotFound> =>
    Effect.gen(function*() {
      const now = DateTime.formatIso(yield* DateTime.now)
      const reason = request.status === "revoked" ? REVOKED_BY_PATIENT : request.reason
      const [updated] = yield* sql`UPDATE relationships
          SET status = ${request.status}, ended_at = ${now}, end_reason = ${reason}, updated_at = ${now}
          WHERE relationship_id = ${relationship_id} AND status = 'active' RETURNING *`
      if (updated === undefined) {
        const current = yield* findById(relationship_id)
        if (Option.isNone(current)) {
          return yield* new RelationshipNotFound({ relationship_id, message: `no relationship ${relationship_id}` })
        }
        return { outcome: "already_ended", relationship: current.value } satisfies EndOutcome
      }
      const relationship = yield* decodeRow(updated)
      const ids = {
        relationship_id,
        patient_agent_id: relationship.patient_agent_id,
        provider_npi: relationship.provider_npi
      }
      const event = request.status === "revoked"
        ? new RelationshipRevoked({ ...ids, revoked_at: request.revoked_at })
        : new RelationshipTerminated({ ...ids, reason: request.reason })
      yield* sql`INSERT INTO lifecycle_events (stream, version, type, payload, at)
        VALUES (${relationshipStream(relationship_id)}, 1, ${event._tag}, ${yield* encodeEvent(event)}, ${now})`
      yield* audit.append({
        at: now,
        actor: request.status === "revoked"
          ? `patient:${relationship.patient_agent_id}`
          : request.actor ?? "operator",
        action: `relationship.${request.status}`,
        subject: relationship_id,
        details: {
          provider_npi: relationship.provider_npi,
          patient_agent_id: relationship.patient_agent_id,
          from: "active",
          to: request.status,
          ...(request.status === "revoked"
            ? { revoked_at: request.revoked_at, ...request.details }
            : { reason: request.reason })
        }
      })
      yield* Effect.logInfo("relationship ended").pipe(
        Effect.annotateLogs({
          service: "RelationshipStore",
          relationship_id,
          status: request.status,
          provider_npi: relationship.provider_npi
        })
      )
      return { outcome: "ended", relationship } satisfies EndOutcome
    }).pipe(
      sql.withTransaction,
      Effect.catchTags({ SqlError: Effect.die, ParseError: Effect.die }),
      Effect.withSpan("RelationshipStore.end", { attributes: { relationship_id, status: request.status } })
    )

  return { establish, establishNow, list, active, get, end } as const
})

/** Consent relationships on the host's SqlClient (migrated with `NeuronMigrations`), with their AuditLog. */
export class RelationshipStore extends Effect.Service<RelationshipStore>()("neuron/RelationshipStore", {
  scoped: make,
  dependencies: [AuditLog.Default]
}) {}

/**
 * Rows of the store: the snapshot (`registration`, `providers`), a projection of `lifecycle_events`, and
 * the event log itself. Schema-typed, parameters always bound. Used by the RegistrationStore only.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { LifecycleEvent } from "./LifecycleEvent.js"
import type { RegistrationState } from "./LifecycleState.js"
import { Provider, RegistrationSnapshot } from "./LifecycleState.js"
import { RELATIONSHIP_STREAM_PREFIX } from "./RelationshipEvent.js"

/** The registration as the store knows it: the events' snapshot, the bearer token and the last heartbeat. */
export const Registration = Schema.Struct({
  ...RegistrationSnapshot.fields,
  /** Set by `Registered`, kept while `registered` or `deregistering`, cleared otherwise. Never logged. */
  bearer_token: Schema.NullOr(Schema.Redacted(Schema.String)),
  /** Written by `touchHeartbeat` only: heartbeats are frequent and make no event. */
  last_heartbeat_at: Schema.NullOr(Schema.String)
})
/** @see Registration */
export type Registration = typeof Registration.Type

/** Only a registration that can still call the registry keeps its token. */
export const keepsToken = (state: RegistrationState): boolean => state === "registered" || state === "deregistering"

/** The `registration` row: `last_seq` is the last event (of any stream) the snapshot includes. */
export const RegistrationRow = Schema.Struct({ ...Registration.fields, last_seq: Schema.NonNegativeInt })
/** @see RegistrationRow */
export type RegistrationRow = typeof RegistrationRow.Type

const ProviderRow = Schema.Struct({
  ...Provider.fields,
  types: Schema.NullOr(Schema.parseJson(Schema.Array(Schema.String)))
})

const EventFields = {
  stream: Schema.String,
  version: Schema.Int,
  type: Schema.String,
  /** The event, stored as JSON in the `payload` column. */
  event: Schema.propertySignature(Schema.parseJson(LifecycleEvent)).pipe(Schema.fromKey("payload")),
  at: Schema.String
}
const NewEvent = Schema.Struct(EventFields)

/** One row of `lifecycle_events`, decoded. */
export const StoredEvent = Schema.Struct({ seq: Schema.Int, ...EventFields })
/** @see StoredEvent */
export type StoredEvent = typeof StoredEvent.Type

/** The field paths a parse error names, without the values (a value could be the token). */
export const failedPaths = (error: ParseResult.ParseError): string =>
  [...new Set(ParseResult.ArrayFormatter.formatErrorSync(error).map((i) => i.path.join(".") || "(row)"))].join(", ")

/** The store's table access on one SqlClient. */
export type Tables = Effect.Effect.Success<typeof makeTables>

/** @see Tables */
export const makeTables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // The snapshot is a projection of the registration's and the providers' streams only: a relationship's end
  // (RelationshipEvent) shares the log and its sequence but is no part of the snapshot.
  const registrationStreams = sql`stream NOT LIKE ${RELATIONSHIP_STREAM_PREFIX + "%"}`

  const readRegistration = SqlSchema.findOne({
    Request: Schema.Void,
    Result: RegistrationRow,
    execute: () => sql`SELECT * FROM registration WHERE id = 1`
  })
  const writeRegistration = SqlSchema.void({
    Request: RegistrationRow,
    execute: (row) => sql`INSERT OR REPLACE INTO registration ${sql.insert({ id: 1, ...row })}`
  })
  const readProvider = SqlSchema.findOne({
    Request: Schema.String,
    Result: ProviderRow,
    execute: (npi) => sql`SELECT * FROM providers WHERE npi = ${npi}`
  })
  const writeProvider = SqlSchema.void({
    Request: ProviderRow,
    execute: (row) => sql`INSERT OR REPLACE INTO providers ${sql.insert(row)}`
  })
  const listProviders = SqlSchema.findAll({
    Request: Schema.Boolean,
    Result: ProviderRow,
    execute: (includeRemoved) =>
      sql`SELECT * FROM providers ${includeRemoved ? sql`` : sql`WHERE status <> 'removed'`} ORDER BY npi`
  })
  const insertEvent = (row: typeof NewEvent.Type) =>
    Schema.encode(NewEvent)(row).pipe(
      Effect.flatMap((encoded) =>
        sql<{ seq: number }>`INSERT INTO lifecycle_events ${sql.insert(encoded)} RETURNING seq`
      ),
      Effect.map((rows) => rows[0].seq)
    )
  const listEvents = SqlSchema.findAll({
    Request: Schema.Int,
    Result: StoredEvent,
    execute: (limit) =>
      sql`SELECT * FROM (SELECT * FROM lifecycle_events WHERE ${registrationStreams} ORDER BY seq DESC LIMIT ${limit})
          ORDER BY seq`
  })

  /** Every event in order, decoded one by one so that an unreadable row is named by its seq. */
  const readLog = Effect.gen(function*() {
    const rows = yield* sql`SELECT * FROM lifecycle_events WHERE ${registrationStreams} ORDER BY seq`
    const decode = Schema.decodeUnknownEither(StoredEvent)
    return yield* Effect.forEach(rows, (row) =>
      Either.match(decode(row), {
        onLeft: (e) => Effect.dieMessage(`lifecycle event ${(row as any).seq} is unreadable (${failedPaths(e)})`),
        onRight: Effect.succeed
      }))
  })

  /**
   * Why the snapshot cannot be trusted, or none: the row is missing or undecodable, or a version or the
   * last event it includes disagrees with the event log (for the registration or any provider).
   */
  const diagnose = Effect.gen(function*() {
    const raw = yield* sql`SELECT * FROM registration WHERE id = 1`
    if (raw.length === 0) return Option.some("the snapshot row is missing")
    const row = Schema.decodeUnknownEither(RegistrationRow, { errors: "all" })(raw[0])
    if (Either.isLeft(row)) return Option.some(`the snapshot row is undecodable (${failedPaths(row.left)})`)
    const [log] = yield* sql<{ last_seq: number; version: number }>`
      SELECT coalesce(max(seq), 0) AS last_seq,
             coalesce(max(CASE WHEN stream = 'registration' THEN version END), 0) AS version
      FROM lifecycle_events WHERE ${registrationStreams}`
    if (log.last_seq !== row.right.last_seq || log.version !== row.right.version) {
      return Option.some(
        `the snapshot (version ${row.right.version}, event ${row.right.last_seq}) disagrees with the event log ` +
          `(version ${log.version}, event ${log.last_seq})`
      )
    }
    const providers = Schema.decodeUnknownEither(Schema.Array(ProviderRow), { errors: "all" })(
      yield* sql`SELECT * FROM providers`
    )
    if (Either.isLeft(providers)) {
      return Option.some(`a provider row is undecodable (${failedPaths(providers.left)})`)
    }
    const streams = yield* sql<{ stream: string; version: number }>`
      SELECT stream, max(version) AS version FROM lifecycle_events
      WHERE stream <> 'registration' AND ${registrationStreams} GROUP BY stream`
    const expected = new Map(streams.map((s) => [s.stream, s.version]))
    const agrees = providers.right.length === expected.size &&
      providers.right.every((p) => expected.get(`provider:${p.npi}`) === p.version)
    return agrees ? Option.none() : Option.some("the providers disagree with the event log")
  })

  return {
    readRegistration: readRegistration(undefined),
    writeRegistration,
    readProvider,
    writeProvider,
    listProviders,
    deleteProviders: sql`DELETE FROM providers`,
    touchHeartbeat: (at: string) => sql`UPDATE registration SET last_heartbeat_at = ${at} WHERE id = 1`,
    readRawRegistration: sql`SELECT registration_id, bearer_token, last_heartbeat_at FROM registration WHERE id = 1`,
    insertEvent,
    listEvents,
    readLog,
    diagnose
  } as const
})

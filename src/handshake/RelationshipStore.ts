/**
 * RelationshipStore: the consent relationships a completed handshake creates (table `relationships` of
 * `NeuronMigrations`). At most one active relationship per (patient, provider) is enforced by the database
 * (the unique partial index `relationships_active`), so two handshakes racing for the same pair leave one row:
 * the insert that loses the race does nothing and reads the winner's row instead.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"

/** A stored relationship, decoded (`consented_actions` is stored as a JSON array). */
export const Relationship = Schema.Struct({
  relationship_id: Schema.String,
  patient_agent_id: Schema.String,
  provider_npi: Schema.String,
  /** The patient's Ed25519 public key, canonical base64url. */
  patient_public_key: Schema.String,
  consented_actions: Schema.parseJson(Schema.Array(Schema.String)),
  status: Schema.Literal("active", "revoked"),
  created_at: Schema.String,
  updated_at: Schema.String
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

const PairRequest = Schema.Struct({ patient_agent_id: Schema.String, provider_npi: Schema.String })

/** Builds the store on the host's SqlClient. */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const findActive = SqlSchema.findOne({
    Request: PairRequest,
    Result: Relationship,
    execute: (r) =>
      sql`SELECT * FROM relationships
          WHERE patient_agent_id = ${r.patient_agent_id} AND provider_npi = ${r.provider_npi} AND status = 'active'`
  })
  const insertNew = SqlSchema.findAll({
    Request: Relationship,
    Result: Schema.Struct({ relationship_id: Schema.String }),
    // The conflict target names the partial index: only an active duplicate is skipped, any other
    // constraint violation still fails loudly.
    execute: (row) =>
      sql`INSERT INTO relationships ${sql.insert(row)}
          ON CONFLICT (patient_agent_id, provider_npi) WHERE status = 'active' DO NOTHING
          RETURNING relationship_id`
  })
  const updateActions = SqlSchema.void({
    Request: Schema.Struct({
      relationship_id: Schema.String,
      consented_actions: Relationship.fields.consented_actions,
      updated_at: Schema.String
    }),
    execute: (r) =>
      sql`UPDATE relationships SET consented_actions = ${r.consented_actions}, updated_at = ${r.updated_at}
          WHERE relationship_id = ${r.relationship_id}`
  })
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

  const sameActions = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) =>
    a.length === b.length && a.every((x, i) => x === b[i])

  /**
   * Creates the relationship, or returns the active one for the same patient, provider and key. The latest
   * consent governs: an existing relationship takes the consented actions of the token just verified.
   * `within` runs in the same transaction (the handshake writes its audit entry there: one commit for both).
   */
  const establish = <E = never>(
    request: EstablishRequest,
    within?: (established: Established) => Effect.Effect<void, E>
  ): Effect.Effect<Established, RelationshipKeyMismatch | E> =>
    Effect.gen(function*() {
      const now = DateTime.formatIso(yield* DateTime.now)
      // Two rounds at most: the second only when the winning row was revoked between our insert and read.
      for (let round = 0; round < 2; round++) {
        const relationship_id = randomUUID()
        const inserted = yield* insertNew({
          relationship_id,
          patient_agent_id: request.patient_agent_id,
          provider_npi: request.provider_npi,
          patient_public_key: request.patient_public_key,
          consented_actions: request.consented_actions,
          status: "active",
          created_at: now,
          updated_at: now
        })
        if (inserted.length > 0) return { relationship_id, status: "new" } satisfies Established
        const existing = yield* findActive(request)
        if (Option.isNone(existing)) continue
        const row = existing.value
        if (row.patient_public_key !== request.patient_public_key) {
          return yield* new RelationshipKeyMismatch({
            reason: "key_mismatch",
            message: "patient_public_key differs from the key of the existing relationship with this provider"
          })
        }
        if (!sameActions(row.consented_actions, request.consented_actions)) {
          yield* updateActions({
            relationship_id: row.relationship_id,
            consented_actions: request.consented_actions,
            updated_at: now
          })
        }
        return { relationship_id: row.relationship_id, status: "existing" } satisfies Established
      }
      return yield* Effect.dieMessage("relationships: the active relationship vanished twice while establishing")
    }).pipe(
      Effect.tap((established) => within === undefined ? Effect.void : within(established)),
      sql.withTransaction,
      Effect.catchTag("SqlError", "ParseError", Effect.die),
      Effect.withSpan("RelationshipStore.establish")
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

  /** Marks a relationship revoked; true when it was active. */
  const revoke = (relationship_id: string) =>
    Effect.gen(function*() {
      const now = DateTime.formatIso(yield* DateTime.now)
      const rows = yield* sql`UPDATE relationships SET status = 'revoked', updated_at = ${now}
        WHERE relationship_id = ${relationship_id} AND status = 'active' RETURNING relationship_id`
      return rows.length > 0
    }).pipe(Effect.orDie, Effect.withSpan("RelationshipStore.revoke"))

  return { establish, list, active, revoke } as const
})

/** Consent relationships on the host's SqlClient (migrated with `NeuronMigrations`). */
export class RelationshipStore extends Effect.Service<RelationshipStore>()("neuron/RelationshipStore", {
  effect: make
}) {}

/**
 * The registry's persistence as one service with two implementations:
 *
 * - `SqliteRegistryStore` (the embedded default, one process): SQLite is the record and an in-memory index the
 *   working copy, so a heartbeat is a synchronous lookup and its time is group-committed.
 * - `PgRegistryStore` (`AXON_DATABASE_URL`, any number of instances on one database): PostgreSQL is the only
 *   state. Every request reads and writes the database, so a write through one instance is seen by the next
 *   request to any other, and races are settled by the database (unique constraints, `INSERT ... ON CONFLICT`).
 *
 * The HTTP handlers, the monitor and discovery see only this interface.
 */
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type {
  AlreadyRegistered,
  Forbidden,
  NotRegistered,
  RegisterNeuronRequest,
  Unavailable
} from "../protocol/AxonApi.js"
import { Unauthorized } from "../protocol/AxonApi.js"
import * as GroupCommit from "../sql/GroupCommit.js"
import type { Counts, NeuronEntry, NeuronIndex, StoredStatus } from "./NeuronIndex.js"
import * as Tokens from "./Tokens.js"

/** How often heartbeat times are committed to SQLite (the most a crash can lose of them). */
export const FLUSH_EVERY = Duration.millis(250)

/**
 * The most registrations committed in one transaction by the group commit (`src/sql/GroupCommit.ts`): enough to
 * share a commit among every connection a busy load balancer keeps open, few enough that a batch's statement stays
 * small.
 */
export const REGISTRATION_BATCH = 64

/**
 * Registrations per committed transaction (an Effect metric, for an operator's metrics exporter and the tests that
 * show batches form): 1 when nothing else was waiting, or for each registration retried alone after its batch was
 * refused as a whole.
 */
export const registrationBatchSize = Metric.histogram(
  "axon_registration_batch_size",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 8 }),
  "registrations committed per transaction by the group commit"
)

/**
 * The group commit of a store's registrations: `commit` writes one or more in one transaction and gives each its
 * outcome; a batch it refuses as a whole is written again one registration at a time. `writers`: batches in flight
 * at once. Gives the function a registration is submitted through, answered after its commit.
 */
export const groupCommitRegistrations = <I, A, E>(
  commit: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<Exit.Exit<A, E>>, E>,
  writers = 1
): Effect.Effect<(item: I) => Effect.Effect<A, E>, never, Scope.Scope> =>
  Effect.map(
    GroupCommit.make<I, A, E, never>({
      maxBatch: REGISTRATION_BATCH,
      writers,
      batch: (items) => Effect.tap(commit(items), () => Metric.update(registrationBatchSize, items.length)),
      single: (item) =>
        commit([item]).pipe(
          Effect.tap(() => Metric.update(registrationBatchSize, 1)),
          Effect.flatMap(([outcome]) => outcome ?? Effect.dieMessage("the store gave no outcome for a registration"))
        )
    }),
    (group) => group.submit
  )

/** The default heartbeat interval, in seconds (PROTOCOL.md section 1). */
export const DEFAULT_INTERVAL_S = 60

/** The answer to a registration: the bearer token is in it, and nowhere else. */
export interface Registration {
  readonly entry: NeuronEntry
  readonly token: Redacted.Redacted<string>
  readonly created: boolean
}

/**
 * Whether a registration comes with the enrollment token (it may then rotate a live registration); `401` when
 * enrollment is required and the token is missing or wrong. Both stores start a registration with this.
 */
export const enrollment = (
  enrollmentHash: Option.Option<Buffer>,
  authorization: string | undefined
): Effect.Effect<boolean, Unauthorized> => {
  if (Option.isNone(enrollmentHash)) return Effect.succeed(false)
  return Tokens.matchesEnrollment(authorization, enrollmentHash.value)
    ? Effect.succeed(true)
    : Effect.fail(new Unauthorized({ message: "registration needs the enrollment token as a bearer token" }))
}

/** What one round of the monitor did. */
export interface SweepResult {
  readonly nowMs: number
  readonly transitions: number
  /** False when another instance holds the sweeper's lease (PostgreSQL): this one judged no one. */
  readonly swept: boolean
}

/** A page of live neurons in registration order. */
export interface LivePage {
  readonly entries: ReadonlyArray<NeuronEntry>
  /** The `seq` to continue after, when there are more rows. */
  readonly nextAfter: number | undefined
}

/** What `listLive` filters on. */
export interface LiveQuery {
  readonly after: number
  readonly limit: number
  readonly organizationNpi?: string | undefined
  readonly status?: Exclude<StoredStatus, "deregistered"> | undefined
}

/** Answers a heartbeat whose path was matched and whose body was read (see `HeartbeatFastPath`). */
export type HeartbeatAnswer = (
  clock: Clock.Clock,
  registrationId: string,
  authorization: string | undefined,
  text: string
) => Effect.Effect<HttpServerResponse.HttpServerResponse>

/** Registrations, their tokens, heartbeats and liveness transitions. */
export interface RegistryStoreShape {
  readonly backend: "sqlite" | "postgres"
  /** `POST /v1/neurons`: a new registration, or, with the enrollment token, a rotation of the live one. */
  readonly register: (
    request: RegisterNeuronRequest,
    authorization: string | undefined
  ) => Effect.Effect<Registration, Unauthorized | AlreadyRegistered | Unavailable>
  /**
   * The registration a request may act on, or why not: 401 without a well-formed known token, 403 for another
   * live registration's token, 404 for a deregistered registration's own token.
   */
  readonly authorize: (
    registrationId: string,
    authorization: string | undefined
  ) => Effect.Effect<NeuronEntry, Unauthorized | Forbidden | NotRegistered | Unavailable>
  /** A heartbeat of an authorized registration; the time it was recorded at. */
  readonly heartbeat: (entry: NeuronEntry, endpointUrl: string) => Effect.Effect<number, NotRegistered | Unavailable>
  /** The heartbeat route, ahead of the router. */
  readonly answerHeartbeat: HeartbeatAnswer
  /** `DELETE /v1/neurons/{id}`: the neuron leaves; its token then answers 404. */
  readonly deregister: (entry: NeuronEntry) => Effect.Effect<void, Unavailable>
  /**
   * Applies the transitions due now and writes their alerts (when this instance is the sweeper). `periodMs` is
   * the sweep period, which sets the length of the sweeper's lease on PostgreSQL.
   */
  readonly sweep: (periodMs: number) => Effect.Effect<SweepResult, unknown>
  /** Writes what is held in memory (SQLite's heartbeat times); nothing to do on PostgreSQL. */
  readonly flush: Effect.Effect<void, unknown>
  /** Live registrations by status. */
  readonly counts: Effect.Effect<Counts, Unavailable>
  /** The shortest heartbeat interval among live registrations, in seconds, if any. */
  readonly shortestIntervalS: Effect.Effect<number | undefined, Unavailable>
  /**
   * How often the monitor re-reads the sweep period while it waits, when registrations through other instances
   * can change it (PostgreSQL); `undefined` when this process sees every registration (SQLite).
   */
  readonly replanEveryMs: number | undefined
  /** Resolves when a registration through this instance may have changed the shortest interval. */
  readonly intervalChanged: Effect.Effect<void>
  /** A registration by id (any status). */
  readonly get: (registrationId: string) => Effect.Effect<NeuronEntry | undefined, Unavailable>
  /** The live registration of an organization. */
  readonly liveByOrganization: (npi: string) => Effect.Effect<NeuronEntry | undefined, Unavailable>
  /** Live registrations in registration order, after `seq`. */
  readonly listLive: (query: LiveQuery) => Effect.Effect<LivePage, Unavailable>
  /** When the last sweep ran, whichever instance ran it; `undefined` when only this process sweeps. */
  readonly sharedLastSweepAt: Effect.Effect<Option.Option<number>, Unavailable> | undefined
  /** SQLite's in-memory working copy (tests reach it); `undefined` on PostgreSQL. */
  readonly index: NeuronIndex | undefined
}

/** The registry's store. */
export class RegistryStore extends Context.Tag("neuron/registry/RegistryStore")<RegistryStore, RegistryStoreShape>() {}

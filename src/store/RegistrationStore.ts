/**
 * The Neuron's state store on the host's SqlClient: the registration snapshot, providers, the lifecycle
 * event log and (through AuditLog) the audit chain. Every change is one transaction: version check,
 * guard (the Lifecycle table), new snapshot, one event row, one audit row. The snapshot is a projection
 * of the event log and is rebuilt from it at startup when it is missing or disagrees with the log.
 * The bearer token lives in the snapshot row only: never in an event, an audit entry or a log line.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { Npi } from "../domain/Npi.js"
import { describeParseError } from "../http/ErrorBody.js"
import { NeuronMetrics, timeTransaction } from "../observability/NeuronMetrics.js"
import * as Sqlite from "../sql/Sqlite.js"
import type { StorageUnavailable } from "../sql/StorageUnavailable.js"
import { AuditLog } from "./AuditLog.js"
import * as Lifecycle from "./Lifecycle.js"
import type { Provider } from "./Lifecycle.js"
import { LifecycleError } from "./Lifecycle.js"
import * as Events from "./LifecycleEvent.js"
import type { LifecycleEvent } from "./LifecycleEvent.js"
import { replaySnapshot } from "./Recovery.js"
import { keepsToken, makeTables } from "./Snapshot.js"
import type { Registration, RegistrationRow, StoredEvent } from "./Snapshot.js"

/** A write based on a version another writer has moved past. Nothing was written: re-read and decide again. */
export class StaleVersion extends Schema.TaggedError<StaleVersion>()("StaleVersion", {
  stream: Schema.String,
  expected: Schema.Int,
  actual: Schema.Int,
  message: Schema.String
}) {}

/**
 * How a transition is audited. `action` defaults to `lifecycle.<EventTag>`, `subject` to the provider's NPI
 * or the registration id; `details` are merged over the event's own fields, `from`, `to` and `version`.
 */
export interface AuditNote {
  readonly actor: string
  readonly action?: string
  readonly subject?: string
  readonly details?: Record<string, unknown>
}

/** A transition's outcome; `written` is false when the event changed nothing (an idempotent repeat). */
export interface Transitioned {
  readonly registration: Registration
  readonly provider: Provider | null
  readonly written: boolean
}

/** The details an operator gives for a provider. */
export interface ProviderInput {
  readonly npi: Npi
  readonly name?: string
  readonly types?: ReadonlyArray<string>
  readonly specialty?: string
  readonly endpoint_url?: string
}

const withoutSeq = ({ last_seq: _, ...registration }: RegistrationRow): Registration => registration

/** Builds an event from loose input: a bad field is a LifecycleError `invalid_event` naming it. */
const build = <A extends LifecycleEvent>(make: () => A) =>
  Effect.try({
    try: make,
    catch: (e) =>
      new LifecycleError({
        reason: "invalid_event",
        state: "-",
        event: "-",
        message: ParseResult.isParseError(e) ? describeParseError(e) : String(e)
      })
  })

/** Builds the service on the SqlClient and AuditLog it is given; repairs the snapshot first if needed. */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const inWriteTransaction = Sqlite.writeTransaction(sql)
  const audit = yield* AuditLog
  const tables = yield* makeTables
  const now = Effect.map(DateTime.now, DateTime.formatIso)
  const readRow = Effect.flatMap(
    tables.readRegistration,
    Option.match({
      onNone: () => Effect.dieMessage("the registration snapshot row is missing"),
      onSome: Effect.succeed
    })
  )

  // Providers as last read, for `getProvider` (every handshake asks for its provider): a read decodes a row
  // through Schema, which measured in the handshake's CPU. Every write moves `generation` before and after it;
  // a read remembers its result only if no write started or ended while it ran.
  let generation = 0
  const providerCache = new Map<Npi, Option.Option<Provider>>()
  const invalidate = Effect.sync(() => {
    generation++
    providerCache.clear()
  })
  const writing = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.zipRight(invalidate, Effect.ensuring(effect, invalidate))
  const getProvider = (npi: Npi): Effect.Effect<Option.Option<Provider>> =>
    Effect.suspend(() => {
      const cached = providerCache.get(npi)
      if (cached !== undefined) return Effect.succeed(cached)
      const before = generation
      return Effect.tap(tables.readProvider(npi).pipe(Effect.orDie), (provider) => {
        if (generation === before) providerCache.set(npi, provider)
      })
    })

  const metrics = yield* Effect.serviceOption(NeuronMetrics)
  // Counts the committed changes of providers in this process: readers that derive something from the providers
  // (the agent card) rebuild it when the count moves, instead of reading the table on every request.
  let providerChanges = 0
  const bumpProviders = Effect.sync(() => void providerChanges++)

  const write = (expected: number | undefined, event: LifecycleEvent, note: AuditNote, token?: Redacted.Redacted) =>
    Effect.gen(function*() {
      const at = yield* now
      const row = yield* readRow
      const stored = Events.isProviderEvent(event) ? yield* tables.readProvider(event.npi) : Option.none()
      const state: Lifecycle.NeuronState = {
        registration: row,
        providers: Option.match(stored, { onNone: () => new Map(), onSome: (p) => new Map([[p.npi, p]]) })
      }
      const stream = Events.streamOf(event)
      const actual = Lifecycle.versionOf(state, event)
      if (expected !== undefined && expected !== actual) {
        return yield* new StaleVersion({
          stream,
          expected,
          actual,
          message: `${event._tag} expected ${stream} at version ${expected}, found ${actual}`
        })
      }
      if (event._tag === "Registered" && token === undefined) {
        return yield* new LifecycleError({
          reason: "missing_token",
          state: row.state,
          event: event._tag,
          message: "Registered needs the bearer token beside it"
        })
      }
      const next = yield* Lifecycle.apply(state, event, at)
      const provider = Events.isProviderEvent(event) ? next.providers.get(event.npi) ?? null : null
      if (next === state) return { registration: withoutSeq(row), provider, written: false }
      const version = Lifecycle.versionOf(next, event)
      const seq = yield* tables.insertEvent({ stream, version, type: event._tag, event, at })
      const registration: Registration = {
        ...next.registration,
        bearer_token: event._tag === "Registered"
          ? token!
          : keepsToken(next.registration.state)
          ? row.bearer_token
          : null,
        last_heartbeat_at: row.last_heartbeat_at
      }
      yield* tables.writeRegistration({ ...registration, last_seq: seq })
      if (provider !== null) yield* tables.writeProvider(provider)
      const from = Option.match(stored, { onNone: () => row.state as string, onSome: (p) => p.status })
      const to = provider?.status ?? registration.state
      const { _tag, ...fields } = Schema.encodeSync(Events.LifecycleEvent)(event)
      yield* audit.append({
        actor: note.actor,
        action: note.action ?? `lifecycle.${_tag}`,
        subject: note.subject ?? provider?.npi ?? registration.registration_id ?? undefined,
        details: { ...fields, from, to, version, ...note.details }
      })
      yield* Effect.annotateCurrentSpan({ "lifecycle.event": _tag, "lifecycle.from": from, "lifecycle.to": to })
      yield* Effect.logInfo("lifecycle transition").pipe(
        Effect.annotateLogs({ event: _tag, stream, from, to, version })
      )
      return { registration, provider, written: true }
    }).pipe(
      // BEGIN IMMEDIATE, retried while another process holds the lock; a full disk is StorageUnavailable.
      inWriteTransaction,
      writing,
      timeTransaction(metrics, "lifecycle"),
      // After the commit: a reader that sees the new count reads the new rows.
      Effect.tap((t) => t.written && t.provider !== null ? bumpProviders : Effect.void),
      Effect.catchTags({ SqlError: (e) => Effect.die(e), ParseError: (e) => Effect.die(e) }),
      Effect.annotateLogs({ service: "RegistrationStore" })
    )

  /** Recomputes the snapshot from the event log, in one transaction (docs/store.md, "Recovery by replay"). */
  const rebuildWith = (reason: string) =>
    replaySnapshot({ tables, audit, reason, append: (expected, event) => write(expected, event, { actor: "neuron" }) })
      .pipe(
        Effect.zipRight(readRow),
        Effect.map(withoutSeq),
        inWriteTransaction,
        writing,
        Effect.tap(() => bumpProviders),
        Effect.orDie,
        Effect.annotateLogs({ service: "RegistrationStore" })
      )

  const startup = yield* tables.diagnose.pipe(Effect.orDie)
  if (Option.isSome(startup)) yield* rebuildWith(startup.value)

  const transition = (
    expectedVersion: number,
    event: LifecycleEvent,
    audit: AuditNote,
    options?: { readonly bearerToken?: Redacted.Redacted<string> }
  ): Effect.Effect<Transitioned, LifecycleError | StaleVersion | StorageUnavailable> =>
    write(expectedVersion, event, audit, options?.bearerToken).pipe(Effect.withSpan("RegistrationStore.transition"))

  const registrationStep =
    (name: string) => <A extends LifecycleEvent>(expectedVersion: number, make: () => A, actor = "neuron") =>
      build(make).pipe(
        Effect.flatMap((event) => write(expectedVersion, event, { actor })),
        Effect.map((t) => t.registration),
        Effect.withSpan(`RegistrationStore.${name}`)
      )

  // Provider steps read the provider's version inside their own transaction: the guards decide.
  const providerStep = (name: string) => <A extends LifecycleEvent>(make: () => A, actor: string) =>
    build(make).pipe(
      Effect.flatMap((event) => write(undefined, event, { actor })),
      Effect.map((t) => t.provider!),
      Effect.withSpan(`RegistrationStore.${name}`)
    )

  return {
    /** The registration as stored now (token `Redacted`). */
    current: readRow.pipe(Effect.map(withoutSeq), Effect.orDie),
    transition,
    /** `unregistered | lost | conflict | deregistered | registered` → `registering`. */
    startRegistration: (
      expectedVersion: number,
      org: { organization_npi: Npi; organization_name: string; organization_type: string; endpoint_url: string },
      actor?: string
    ) => registrationStep("startRegistration")(expectedVersion, () => new Events.RegistrationStarted(org), actor),
    /** `registering` → `registered`, storing the token beside (never inside) the event. */
    recordRegistered: (
      expectedVersion: number,
      answer: {
        registration_id: string
        bearer_token: Redacted.Redacted<string>
        heartbeat_interval_s: number
        ttl_s: number
        axon_url: string
      }
    ) => {
      const { bearer_token, ...fields } = answer
      return build(() => new Events.Registered(fields)).pipe(
        Effect.flatMap((event) => write(expectedVersion, event, { actor: "neuron" }, bearer_token)),
        Effect.map((t) => t.registration),
        Effect.withSpan("RegistrationStore.recordRegistered")
      )
    },
    /** `registered` → `lost`. */
    markLost: (expectedVersion: number, reason: string) =>
      registrationStep("markLost")(expectedVersion, () => new Events.RegistrationLost({ reason })),
    /** `registering` → `conflict`. */
    markConflict: (expectedVersion: number, message: string) =>
      registrationStep("markConflict")(expectedVersion, () => new Events.ConflictDetected({ message })),
    /** `registered` → `deregistering` (the token is kept for the DELETE call). */
    startDeregistration: (expectedVersion: number, actor?: string) =>
      registrationStep("startDeregistration")(expectedVersion, () => new Events.Deregistering(), actor),
    /** `deregistering` → `deregistered` (the token is cleared). */
    recordDeregistered: (expectedVersion: number, reason?: string) =>
      registrationStep("recordDeregistered")(
        expectedVersion,
        () => new Events.Deregistered(reason === undefined ? {} : { reason })
      ),
    /**
     * Records a successful heartbeat: `last_heartbeat_at` only, no event, no audit row. One try, without waiting
     * for another process's lock: the heartbeat loop must not stall on it, and the next beat writes it again.
     */
    touchHeartbeat: (at?: DateTime.DateTime): Effect.Effect<void, StorageUnavailable> =>
      Effect.flatMap(at === undefined ? now : Effect.succeed(DateTime.formatIso(at)), tables.touchHeartbeat).pipe(
        Sqlite.writeTransaction(sql, { waitForLock: false }),
        Effect.asVoid,
        Effect.catchTag("SqlError", Effect.die)
      ),
    /** Stores (or updates) a provider as `pending`; the same details again change nothing. */
    addProvider: (input: ProviderInput, actor = "operator") =>
      providerStep("addProvider")(() => new Events.ProviderAdded(input), actor),
    /** `pending | registered` → `registered` with the registry's id (needs a registered Neuron). */
    markProviderRegistered: (npi: Npi, provider_id: string) =>
      providerStep("markProviderRegistered")(() => new Events.ProviderRegistered({ npi, provider_id }), "neuron"),
    /** Keeps the registry's refusal as the provider's `last_error`; it stays `pending`. */
    markProviderRefused: (npi: Npi, message: string) =>
      providerStep("markProviderRefused")(() => new Events.ProviderRefused({ npi, message }), "neuron"),
    /** `pending | registered` → `removing`; repeating it, or on a removed provider, changes nothing. */
    requestProviderRemoval: (npi: Npi, actor = "operator") =>
      providerStep("requestProviderRemoval")(() => new Events.ProviderRemovalRequested({ npi }), actor),
    /** `removing` → `removed` (kept as a tombstone, left out of `listProviders`). */
    removeProvider: (npi: Npi) => providerStep("removeProvider")(() => new Events.ProviderRemoved({ npi }), "neuron"),
    /** Providers by NPI; removed ones only when asked. */
    listProviders: (options?: { readonly includeRemoved?: boolean }): Effect.Effect<ReadonlyArray<Provider>> =>
      tables.listProviders(options?.includeRemoved ?? false).pipe(Effect.orDie),
    /** How many provider changes this store has committed since it started: a cheap "did they change?". */
    providerChanges: Effect.sync(() => providerChanges),
    /** One provider, removed ones included. */
    getProvider,
    /**
     * `getProvider`'s answer when it is cached (no read needed), else `undefined`: lets the handshake answer its
     * `handshake.auth` as plain code, without a fiber.
     */
    getProviderCached: (npi: Npi): Option.Option<Provider> | undefined => providerCache.get(npi),
    /** The event log in order; `limit` keeps the newest. */
    events: (options?: { readonly limit?: number }): Effect.Effect<ReadonlyArray<StoredEvent>> =>
      tables.listEvents(options?.limit ?? -1).pipe(Effect.orDie),
    /** Rebuilds the snapshot from the event log now (startup does it by itself when needed). */
    rebuild: Effect.suspend(() => rebuildWith("requested")).pipe(Effect.withSpan("RegistrationStore.rebuild"))
  } as const
})

/** The store on the host's SqlClient (migrated with `NeuronMigrations`); includes its AuditLog. */
export class RegistrationStore extends Effect.Service<RegistrationStore>()("neuron/RegistrationStore", {
  effect: make,
  dependencies: [AuditLog.Default]
}) {
  /** A fake for tests about something else: a fresh in-memory SQLite per build, with its AuditLog and SqlClient. */
  static readonly layerMemory = this.DefaultWithoutDependencies.pipe(Layer.provideMerge(AuditLog.layerMemory))
}

import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Npi } from "../../src/domain/Npi.js"
import * as Lifecycle from "../../src/store/Lifecycle.js"
import * as Events from "../../src/store/LifecycleEvent.js"

const at = "2026-01-01T00:00:00.000Z"
const ORG = Npi.make("1234567893")
const P1 = Npi.make("1558598797")
const started = new Events.RegistrationStarted({
  organization_npi: ORG,
  organization_name: "Clinic",
  organization_type: "practice",
  endpoint_url: "http://127.0.0.1:8700"
})
const registered = new Events.Registered({
  registration_id: "reg-1",
  heartbeat_interval_s: 60,
  ttl_s: 180,
  axon_url: "http://axon"
})

const run = (events: ReadonlyArray<Events.LifecycleEvent>, from = Lifecycle.initial) =>
  Lifecycle.replay(events.map((event) => ({ event, at })), from)
const right = <A, E>(e: Either.Either<A, E>): A => Either.getOrThrowWith(e, (l) => new Error(String(l)))

describe("Lifecycle (pure state machine)", () => {
  it("walks the registration lifecycle and counts a version per registration event", () => {
    const s = right(run([started, registered]))
    assert.strictEqual(s.registration.state, "registered")
    assert.strictEqual(s.registration.version, 2)
    assert.strictEqual(s.registration.registration_id, "reg-1")
    assert.strictEqual(s.registration.organization_npi, ORG)
    const lost = right(run([new Events.RegistrationLost({ reason: "401 on heartbeat" })], s))
    assert.strictEqual(lost.registration.state, "lost")
    assert.strictEqual(lost.registration.last_error, "401 on heartbeat")
    const again = right(run([started, registered, new Events.Deregistering(), new Events.Deregistered({})], lost))
    assert.strictEqual(again.registration.state, "deregistered")
    assert.strictEqual(again.registration.registration_id, null)
    assert.strictEqual(again.registration.version, 7)
  })

  it("refuses an invalid transition with LifecycleError invalid_transition", () => {
    const result = run([registered])
    assert.isTrue(Either.isLeft(result))
    const error = Either.getLeft(result).pipe((o) => o._tag === "Some" ? o.value : undefined)!
    assert.strictEqual(error._tag, "LifecycleError")
    assert.strictEqual(error.reason, "invalid_transition")
    assert.strictEqual(error.state, "unregistered")
    assert.strictEqual(error.event, "Registered")
    // Every edge not in the table is refused.
    for (const state of Lifecycle.RegistrationState.literals) {
      const from: Lifecycle.NeuronState = {
        ...Lifecycle.initial,
        registration: { ...Lifecycle.initial.registration, state }
      }
      const allowed = Lifecycle.registrationTransitions[state]
      const tags = ["RegistrationStarted", "Registered", "RegistrationLost", "ConflictDetected", "Deregistering"]
      for (const tag of tags) {
        const event = ({
          RegistrationStarted: started,
          Registered: registered,
          RegistrationLost: new Events.RegistrationLost({ reason: "r" }),
          ConflictDetected: new Events.ConflictDetected({ message: "m" }),
          Deregistering: new Events.Deregistering()
        } as Record<string, Events.LifecycleEvent>)[tag]
        const result = Lifecycle.apply(from, event, at)
        const to = (allowed as Record<string, string | undefined>)[tag]
        assert.strictEqual(Either.isRight(result) ? result.right.registration.state : undefined, to, `${state} ${tag}`)
      }
    }
  })

  it("moves a provider pending → registered → removing → removed, with its own version", () => {
    const base = right(run([started, registered]))
    const s = right(run([
      new Events.ProviderAdded({ npi: P1, name: "Dr A", types: ["physician"] }),
      new Events.ProviderRefused({ npi: P1, message: "unknown type" }),
      new Events.ProviderRegistered({ npi: P1, provider_id: "prov-1" }),
      new Events.ProviderRemovalRequested({ npi: P1 }),
      new Events.ProviderRemoved({ npi: P1 })
    ], base))
    const p = s.providers.get(P1)!
    assert.strictEqual(p.status, "removed")
    assert.strictEqual(p.version, 5)
    assert.strictEqual(p.provider_id, "prov-1")
    assert.strictEqual(p.last_error, null)
    assert.strictEqual(s.registration.version, 2, "provider events leave the registration version alone")
    const readded = right(run([new Events.ProviderAdded({ npi: P1 })], s))
    assert.strictEqual(readded.providers.get(P1)!.status, "pending")
    assert.strictEqual(readded.providers.get(P1)!.version, 6, "a re-added provider continues its version")
  })

  it("keeps a refusal as the provider's last error and clears it when registered", () => {
    const base = right(run([started, registered, new Events.ProviderAdded({ npi: P1 })]))
    const refused = right(run([new Events.ProviderRefused({ npi: P1, message: "provider_types required" })], base))
    assert.strictEqual(refused.providers.get(P1)!.status, "pending")
    assert.strictEqual(refused.providers.get(P1)!.last_error, "provider_types required")
  })

  it("guards ProviderRegistered on a registered Neuron and refuses unknown providers", () => {
    const pending = right(run([new Events.ProviderAdded({ npi: P1 })]))
    const early = Lifecycle.apply(pending, new Events.ProviderRegistered({ npi: P1, provider_id: "x" }), at)
    assert.isTrue(Either.isLeft(early) && early.left.reason === "invalid_transition")
    const unknown = Lifecycle.apply(Lifecycle.initial, new Events.ProviderRemovalRequested({ npi: P1 }), at)
    assert.isTrue(Either.isLeft(unknown) && unknown.left.reason === "unknown_provider")
    const direct = Lifecycle.apply(pending, new Events.ProviderRemoved({ npi: P1 }), at)
    assert.isTrue(Either.isLeft(direct) && direct.left.reason === "invalid_transition")
  })

  it("returns the same state object for a repeat that changes nothing", () => {
    const s = right(run([
      started,
      registered,
      new Events.ProviderAdded({ npi: P1, name: "Dr A" }),
      new Events.ProviderRegistered({ npi: P1, provider_id: "prov-1" })
    ]))
    assert.strictEqual(right(Lifecycle.apply(s, new Events.ProviderAdded({ npi: P1, name: "Dr A" }), at)), s)
    assert.strictEqual(
      right(Lifecycle.apply(s, new Events.ProviderRegistered({ npi: P1, provider_id: "prov-1" }), at)),
      s
    )
    const changed = right(Lifecycle.apply(s, new Events.ProviderAdded({ npi: P1, name: "Dr B" }), at))
    assert.strictEqual(changed.providers.get(P1)!.status, "pending", "new details go back to the registry")
  })

  it("events are data: they round-trip through JSON with their tag", () => {
    const codec = Schema.parseJson(Events.LifecycleEvent)
    const json = Schema.encodeSync(codec)(registered)
    assert.deepStrictEqual(JSON.parse(json), { _tag: "Registered", ...JSON.parse(JSON.stringify(registered)) })
    assert.deepStrictEqual(Schema.decodeSync(codec)(json), registered)
    assert.strictEqual(Events.streamOf(new Events.ProviderAdded({ npi: P1 })), `provider:${P1}`)
  })
})

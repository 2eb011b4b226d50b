/**
 * The Neuron's A2A Agent Card (PROTOCOL.md section 9), served at `GET /.well-known/agent.json`: built from live
 * state (the organization, the public URL, one skill per provider the handshake serves) and kept built. It is
 * rebuilt only when the store has committed a change of providers since (`RegistrationStore.providerChanges`), not
 * on every request. Nothing secret goes in: no token, no key, no registration id.
 *
 * Fields: A2A's (`name`, `description`, `url`, `version`, `provider`, `capabilities` as A2A's object,
 * `defaultInputModes`, `defaultOutputModes`, `skills`), careagent/neuron's (`id`, and in `careagent`:
 * `practice_npi`, `organization`, `consent_required`), and section 9's `careagent` fields.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { handshakeEndpoint, NEURON_VERSION, PROTOCOL_VERSION } from "../protocol/Version.js"
import type { Provider } from "../store/Lifecycle.js"
import { RegistrationStore } from "../store/RegistrationStore.js"

/** One provider as an A2A skill. */
export const AgentSkill = Schema.Struct({
  /** `provider:<npi>` */
  id: Schema.String,
  name: Schema.String,
  description: Schema.String,
  /** The provider's types (`physician`, ...). */
  tags: Schema.Array(Schema.String)
})

/** `GET /.well-known/agent.json`. */
export class AgentCardDocument extends Schema.Class<AgentCardDocument>("AgentCard")({
  /** careagent/neuron's id: `neuron-<organization npi>`. */
  id: Schema.String,
  name: Schema.String,
  description: Schema.String,
  url: Schema.String,
  version: Schema.String,
  provider: Schema.Struct({ organization: Schema.String, url: Schema.String }),
  capabilities: Schema.Struct({
    streaming: Schema.Boolean,
    pushNotifications: Schema.Boolean,
    stateTransitionHistory: Schema.Boolean
  }),
  defaultInputModes: Schema.Array(Schema.String),
  defaultOutputModes: Schema.Array(Schema.String),
  skills: Schema.Array(AgentSkill),
  careagent: Schema.Struct({
    organization_npi: Schema.String,
    handshake_endpoint: Schema.String,
    protocol_version: Schema.String,
    /** Where a patient revokes (section 8). */
    revocation_endpoint: Schema.String,
    /** careagent/neuron's names. */
    practice_npi: Schema.String,
    organization: Schema.String,
    consent_required: Schema.Boolean
  })
}) {}

/** Who the card describes. */
export interface AgentCardOptions {
  readonly organization_npi: string
  readonly organization_name: string
  readonly publicUrl: string
}

/** Providers the handshake serves are the card's skills (those `pending` or `registered`, by NPI). */
const served = (p: Provider) => p.status === "pending" || p.status === "registered"

/** The card for `options` and these providers. */
export const buildCard = (options: AgentCardOptions, providers: ReadonlyArray<Provider>): AgentCardDocument => {
  const url = options.publicUrl.replace(/\/+$/, "")
  const name = options.organization_name
  return new AgentCardDocument({
    id: `neuron-${options.organization_npi}`,
    name,
    description: `CareAgent Neuron of ${name}: patients' CareAgents make consent relationships with its providers ` +
      `through the consent handshake, and may revoke them.`,
    url,
    version: NEURON_VERSION,
    provider: { organization: name, url },
    capabilities: { streaming: false, pushNotifications: false, stateTransitionHistory: false },
    defaultInputModes: ["application/json"],
    defaultOutputModes: ["application/json"],
    skills: providers.filter(served).map((p) => ({
      id: `provider:${p.npi}`,
      name: p.name ?? `Provider ${p.npi}`,
      description: `Consent handshake with ${p.name ?? `provider ${p.npi}`}` +
        (p.specialty === null ? "" : ` (${p.specialty})`) + ` of ${name}`,
      tags: [...(p.types ?? [])]
    })),
    careagent: {
      organization_npi: options.organization_npi,
      handshake_endpoint: handshakeEndpoint(url),
      protocol_version: PROTOCOL_VERSION,
      revocation_endpoint: `${url}/v1/consent/revoke`,
      practice_npi: options.organization_npi,
      organization: name,
      consent_required: true
    }
  })
}

/** The Neuron's agent card, kept built. */
export class AgentCard extends Context.Tag("neuron/AgentCard")<AgentCard, {
  /** The card as of the last committed change of providers. */
  readonly get: Effect.Effect<AgentCardDocument>
  /** How many times the card has been built (for tests and metrics: it should move with the providers only). */
  readonly builds: Effect.Effect<number>
}>() {
  /** The card of `options`, over the host's RegistrationStore. */
  static readonly layer = (options: AgentCardOptions): Layer.Layer<AgentCard, never, RegistrationStore> =>
    Layer.effect(
      AgentCard,
      Effect.gen(function*() {
        const store = yield* RegistrationStore
        let cached: { readonly changes: number; readonly card: AgentCardDocument } | undefined
        let builds = 0
        // Two requests that both find it stale build it twice at worst: the same card, no lock needed.
        const get = Effect.gen(function*() {
          const changes = yield* store.providerChanges
          if (cached !== undefined && cached.changes === changes) return cached.card
          const card = buildCard(options, yield* store.listProviders())
          builds++
          cached = { changes, card }
          return card
        })
        return AgentCard.of({ get, builds: Effect.sync(() => builds) })
      })
    )
}

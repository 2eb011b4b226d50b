/**
 * ProviderLookup: how the handshake learns whether a provider is registered with this Neuron and where its
 * own endpoint is. The Neuron provides it from its provider store; the handshake only reads through it.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"

/** A provider the Neuron serves, as the handshake needs it. */
export interface ProviderEntry {
  readonly provider_npi: string
  /** The provider's own endpoint when one was registered with the provider. */
  readonly provider_endpoint_url: Option.Option<string>
}

/** Finds a provider registered with this Neuron (only those the Neuron currently serves). */
export class ProviderLookup extends Context.Tag("neuron/ProviderLookup")<ProviderLookup, {
  /** None when `npi` is not a provider of this Neuron. */
  readonly find: (npi: string) => Effect.Effect<Option.Option<ProviderEntry>>
  /**
   * `find`'s answer when it is at hand without I/O (a cache), `undefined` when `find` must run. Optional: with
   * it the handshake answers `handshake.auth` as plain code, without starting a fiber for the lookup.
   */
  readonly findNow?: ((npi: string) => Option.Option<ProviderEntry> | undefined) | undefined
}>() {
  /**
   * A fixed set of providers, for tests about something else: NPI to its own endpoint (`null`: none).
   * The map is read on every lookup, so a test may change it while the server runs.
   */
  static readonly layerTest = (providers: Map<string, string | null>): Layer.Layer<ProviderLookup> => {
    const findNow = (npi: string): Option.Option<ProviderEntry> =>
      providers.has(npi)
        ? Option.some({ provider_npi: npi, provider_endpoint_url: Option.fromNullable(providers.get(npi)) })
        : Option.none()
    return Layer.succeed(ProviderLookup, ProviderLookup.of({ find: (npi) => Effect.sync(() => findNow(npi)), findNow }))
  }
}

/**
 * Local discovery (PROTOCOL.md section 9) through `bonjour-service` (careagent/neuron's library; it allows the
 * 16-character service name `careagent-neuron`, which RFC 6335 would not): the Neuron advertises a DNS-SD service
 * `_careagent-neuron._tcp` with TXT `npi`, `ver`, `ep` while its scope is open and sends goodbye packets when it
 * closes (SIGTERM included: the process closes the Neuron's scope); `discover` browses for Neurons for a while.
 *
 * `MdnsTransport` is the library's mDNS socket, provided by the host: multicast on the machine's interfaces by
 * default, or any `multicast-dns` options (tests use a loopback unicast socket, the library's in-process responder).
 * A socket error is logged, never thrown: the library's default would throw it out of the event loop.
 */
import { Bonjour, type Service } from "bonjour-service"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"

/** The DNS-SD service type, without the leading underscore and protocol (`_careagent-neuron._tcp`). */
export const SERVICE_TYPE = "careagent-neuron"

/** The TXT record a Neuron advertises. */
export interface NeuronTxt {
  /** The organization's NPI. */
  readonly npi: string
  /** The protocol version. */
  readonly ver: string
  /** The handshake URL. */
  readonly ep: string
}

/** A Neuron heard on the network. */
export interface DiscoveredNeuron extends NeuronTxt {
  /** The DNS-SD instance name. */
  readonly name: string
  readonly host: string
  readonly port: number
  readonly addresses: ReadonlyArray<string>
}

/** Options of the library's mDNS socket (`multicast-dns`): `interface`, `port`, `ip`, `multicast`, `bind`, ... */
export type MdnsSocketOptions = Record<string, unknown>

/** The library's mDNS instance (one socket), for advertising and browsing. */
export class MdnsTransport extends Context.Tag("neuron/MdnsTransport")<MdnsTransport, Bonjour>() {
  /** A socket with `options` (default: multicast on 224.0.0.251:5353), destroyed with the scope. */
  static readonly layer = (options?: MdnsSocketOptions): Layer.Layer<MdnsTransport> =>
    Layer.scoped(
      MdnsTransport,
      Effect.gen(function*() {
        const runtime = yield* Effect.runtime<never>()
        const report = (error: unknown) =>
          Runtime.runFork(runtime)(
            Effect.logWarning("mDNS socket error").pipe(
              Effect.annotateLogs({ service: "Mdns", error: error instanceof Error ? error.message : String(error) })
            )
          )
        return yield* Effect.acquireRelease(
          Effect.sync(() => new Bonjour(options ?? {}, report)),
          (bonjour) => Effect.async<void>((resume) => bonjour.destroy(() => resume(Effect.void)))
        )
      })
    )
}

/** What a Neuron advertises. */
export interface Advertisement {
  /** The DNS-SD instance name: at most 63 bytes, longer names are cut. */
  readonly name: string
  readonly port: number
  readonly txt: NeuronTxt
}

/** Cuts `name` to at most 63 UTF-8 bytes (a DNS label), on a character boundary. */
export const instanceName = (name: string): string => {
  let out = ""
  for (const ch of name) {
    if (Buffer.byteLength(out + ch) > 63) break
    out += ch
  }
  return out
}

const goodbyeTimeout = Duration.seconds(2)

/**
 * Advertises for the length of the scope; closing it sends the goodbye packets (TTL 0) and waits for them to be
 * written (at most 2 s).
 */
export const advertise = (ad: Advertisement): Effect.Effect<Service, never, MdnsTransport | Scope.Scope> =>
  Effect.gen(function*() {
    const bonjour = yield* MdnsTransport
    const service = yield* Effect.acquireRelease(
      Effect.sync(() =>
        bonjour.publish({
          name: instanceName(ad.name),
          type: SERVICE_TYPE,
          protocol: "tcp",
          port: ad.port,
          txt: { npi: ad.txt.npi, ver: ad.txt.ver, ep: ad.txt.ep }
        })
      ),
      (service) =>
        Effect.async<void>((resume) => service.stop(() => resume(Effect.void))).pipe(
          Effect.timeoutOption(goodbyeTimeout),
          Effect.zipRight(Effect.logInfo("mDNS advertisement withdrawn (goodbye sent)")),
          Effect.annotateLogs({ service: "Mdns" })
        )
    )
    yield* Effect.logInfo("advertising on the local network over mDNS").pipe(
      Effect.annotateLogs({ service: "Mdns", type: `_${SERVICE_TYPE}._tcp`, name: service.name, port: ad.port })
    )
    return service
  })

const txtOf = (service: Service): NeuronTxt | undefined => {
  const txt = service.txt as Record<string, unknown> | undefined
  const field = (key: string) => (typeof txt?.[key] === "string" ? (txt[key] as string) : undefined)
  const npi = field("npi")
  const ver = field("ver")
  const ep = field("ep")
  return npi === undefined || ver === undefined || ep === undefined ? undefined : { npi, ver, ep }
}

/**
 * Browses for `_careagent-neuron._tcp` for `timeout` and lists the Neurons heard (a Neuron that said goodbye
 * meanwhile is left out; a service without the three TXT keys is not a Neuron and is left out too).
 */
export const discover = (
  timeout: Duration.DurationInput
): Effect.Effect<ReadonlyArray<DiscoveredNeuron>, never, MdnsTransport> =>
  Effect.gen(function*() {
    const bonjour = yield* MdnsTransport
    const heard = new Map<string, DiscoveredNeuron>()
    const browser = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const browser = bonjour.find({ type: SERVICE_TYPE, protocol: "tcp" })
        browser.on("up", (service) => {
          const txt = txtOf(service)
          if (txt === undefined) return
          heard.set(service.fqdn, {
            name: service.name,
            host: service.host,
            port: service.port,
            addresses: [...(service.addresses ?? [])],
            ...txt
          })
        })
        browser.on("down", (service) => void heard.delete(service.fqdn))
        return browser
      }),
      (browser) => Effect.sync(() => browser.stop())
    )
    void browser
    yield* Effect.sleep(timeout)
    return [...heard.values()].sort((a, b) => a.name.localeCompare(b.name))
  }).pipe(Effect.scoped, Effect.withSpan("Mdns.discover"))

/** Browses with a socket of its own (multicast unless `options` say otherwise): what `neuron discover` runs. */
export const discoverOnNetwork = (timeout: Duration.DurationInput, options?: MdnsSocketOptions) =>
  discover(timeout).pipe(Effect.provide(MdnsTransport.layer(options)))

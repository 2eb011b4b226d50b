/**
 * Settings of the HandshakeServer, from code (`HandshakeServer.layer(options)`) or from the environment
 * (`layerConfig`, PROTOCOL.md section 5).
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"

/** Options of `HandshakeServer.layer`; every one but `publicUrl` has the contract's default. */
export interface HandshakeServerOptions {
  /** The Neuron's public URL (`NEURON_PUBLIC_URL`), for `<public url>/ws/provider/<npi>`. */
  readonly publicUrl: string
  /** `NEURON_AUTH_TIMEOUT_MS`, 10 s: the wait for `handshake.auth`, and the longest wait for the answer. */
  readonly authTimeout?: Duration.DurationInput | undefined
  /** `NEURON_MAX_CONCURRENT_HANDSHAKES`, 1000. */
  readonly maxConcurrentHandshakes?: number | undefined
  /** `NEURON_QUEUE_TIMEOUT_MS`, 30 s: the longest wait in line before `503`. */
  readonly queueTimeout?: Duration.DurationInput | undefined
  /** `NEURON_MAX_PAYLOAD_BYTES`, 64 KiB: larger frames close with 1009. */
  readonly maxPayloadBytes?: number | undefined
  /** `NEURON_ALLOWED_ORIGINS`: when set, an upgrade whose `Origin` is not listed gets `403`. */
  readonly allowedOrigins?: ReadonlyArray<string> | undefined
  /** The `Retry-After` of a `503`, 5 s. */
  readonly retryAfter?: Duration.DurationInput | undefined
  /** How long a closing socket waits for the peer's close frame before it is dropped, 2 s. */
  readonly closeTimeout?: Duration.DurationInput | undefined
}

/** The options with every default applied. */
export interface HandshakeSettings {
  readonly publicUrl: string
  readonly authTimeout: Duration.Duration
  readonly maxConcurrentHandshakes: number
  readonly queueTimeout: Duration.Duration
  readonly maxPayloadBytes: number
  /** Normalized origins (`new URL(o).origin`); None: any Origin. */
  readonly allowedOrigins: Option.Option<ReadonlyArray<string>>
  readonly retryAfter: Duration.Duration
  readonly closeTimeout: Duration.Duration
}

/**
 * An origin as browsers send it: scheme, host and non-default port, lower case. Anything that is not a URL
 * (such as the literal `null` of an opaque origin) is kept as it is and matches only itself.
 */
export const normalizeOrigin = (origin: string): string => {
  try {
    const url = new URL(origin.trim())
    return url.origin === "null" ? origin.trim() : url.origin
  } catch {
    return origin.trim()
  }
}

const positiveInteger = (value: number | undefined, fallback: number, what: string) => {
  const n = value ?? fallback
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`HandshakeServer: ${what} must be a positive integer`)
  return n
}

/** Applies the defaults; throws on a value no configuration should produce (a programming error). */
export const resolveOptions = (options: HandshakeServerOptions): HandshakeSettings => ({
  publicUrl: options.publicUrl.replace(/\/+$/, ""),
  authTimeout: Duration.decode(options.authTimeout ?? Duration.seconds(10)),
  maxConcurrentHandshakes: positiveInteger(options.maxConcurrentHandshakes, 1000, "maxConcurrentHandshakes"),
  queueTimeout: Duration.decode(options.queueTimeout ?? Duration.seconds(30)),
  maxPayloadBytes: positiveInteger(options.maxPayloadBytes, 65_536, "maxPayloadBytes"),
  allowedOrigins: Option.map(Option.fromNullable(options.allowedOrigins), (list) => list.map(normalizeOrigin)),
  retryAfter: Duration.decode(options.retryAfter ?? Duration.seconds(5)),
  closeTimeout: Duration.decode(options.closeTimeout ?? Duration.seconds(2))
})

const millis = (name: string, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: "must be a positive number of milliseconds", validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.map(Duration.millis),
    Config.withDescription(description)
  )

const count = (name: string, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: "must be a positive integer", validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

/** The options from the environment (PROTOCOL.md section 5). */
export const optionsConfig: Config.Config<HandshakeServerOptions> = Config.all({
  publicUrl: Config.string("NEURON_PUBLIC_URL").pipe(
    Config.orElse(() =>
      Config.map(
        Config.all([
          Config.string("NEURON_HOST").pipe(Config.withDefault("127.0.0.1")),
          Config.integer("NEURON_PORT").pipe(Config.withDefault(8700))
        ]),
        ([host, port]) => `http://${host}:${port}`
      )
    ),
    Config.withDescription("the Neuron's public URL (default http://<NEURON_HOST>:<NEURON_PORT>)")
  ),
  authTimeout: millis("NEURON_AUTH_TIMEOUT_MS", 10_000, "handshake auth timeout"),
  maxConcurrentHandshakes: count("NEURON_MAX_CONCURRENT_HANDSHAKES", 1000, "handshakes in progress at once"),
  queueTimeout: millis("NEURON_QUEUE_TIMEOUT_MS", 30_000, "longest wait for a handshake slot before 503"),
  maxPayloadBytes: count("NEURON_MAX_PAYLOAD_BYTES", 65_536, "largest accepted WebSocket frame in bytes"),
  allowedOrigins: Config.string("NEURON_ALLOWED_ORIGINS").pipe(
    Config.map((raw) => raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)),
    Config.option,
    Config.map((list) => Option.getOrUndefined(Option.filter(list, (l) => l.length > 0))),
    Config.withDescription("comma-separated Origin allowlist for browser clients (unset: any)")
  )
})

/**
 * The Neuron's settings (PROTOCOL.md section 5): one Config for the whole process, read from the environment and a
 * config file with the same keys (the environment wins key by key): the file `NEURON_CONFIG_FILE` names, or else
 * `neuron.conf` in the data folder when there is one (what `neuron init` writes). See ConfigFile.ts for the formats.
 *
 * Every variable is read as a string and checked here, so that an error names the variable and says what was
 * expected; blank values count as unset; secrets stay `Redacted` and are never echoed.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { isValidNpi, type Npi } from "../domain/Npi.js"
import { CONFIG_FILE_VARIABLE, DEFAULT_CONFIG_FILE, fromFile, fromVariables } from "./ConfigFile.js"

/** The default steady heartbeat interval (`NEURON_HEARTBEAT_INTERVAL_MS`). */
export const HEARTBEAT_INTERVAL_MS = 60_000

/** The organization the Neuron registers; NPI and name are configured together or not at all. */
export interface OrganizationSettings {
  readonly npi: Npi
  readonly name: string
}

/** The Neuron's settings, validated. Durations come from the `*_MS` variables. */
export interface NeuronSettings {
  /** None: no organization configured (main decides: a development organization or an error). */
  readonly organization: Option.Option<OrganizationSettings>
  readonly organizationType: string
  readonly host: string
  readonly port: number
  /** Without a trailing slash. */
  readonly publicUrl: string
  readonly dataDir: string
  /** Without trailing slashes; empty: run the embedded Axon registry. */
  readonly registryUrls: ReadonlyArray<string>
  readonly enrollmentToken: Option.Option<Redacted.Redacted<string>>
  readonly heartbeatInterval: Duration.Duration
  readonly backoffBase: Duration.Duration
  readonly backoffCeiling: Duration.Duration
  readonly axonTimeout: Duration.Duration
  readonly authTimeout: Duration.Duration
  readonly maxConcurrentHandshakes: number
  readonly queueTimeout: Duration.Duration
  readonly maxPayloadBytes: number
  readonly adminToken: Option.Option<Redacted.Redacted<string>>
  /** None: any Origin. Each entry is a normalized origin (`https://app.example.com`). */
  readonly allowedOrigins: Option.Option<ReadonlyArray<string>>
  /** Requests per minute per API key (a token bucket whose burst is the same number). */
  readonly apiRateLimit: number
  /** Advertise the Neuron on the local network over mDNS / DNS-SD (PROTOCOL.md section 9). */
  readonly mdns: boolean
  /** The Axon registry when embedded or run on its own; its data folder defaults to `<NEURON_DATA_DIR>/axon`. */
  readonly axon: { readonly host: string; readonly port: number; readonly dataDir: string }
  /** The config file that was read, if any. */
  readonly configFile: Option.Option<string>
}

type Parse<A> = (raw: string) => Either.Either<A, string>

const shown = (raw: string) => JSON.stringify(raw.length > 80 ? raw.slice(0, 77) + "..." : raw)

/** An optional variable, trimmed, checked by `parse`; the error names the variable. */
const variable = <A>(name: string, description: string, parse: Parse<A>): Config.Config<Option.Option<A>> =>
  Config.string(name).pipe(
    Config.withDescription(description),
    Config.option,
    Config.mapOrFail((raw) => {
      const value = Option.filter(Option.map(raw, (s) => s.trim()), (s) => s.length > 0)
      if (Option.isNone(value)) return Either.right(Option.none())
      return Either.mapBoth(parse(value.value), {
        onLeft: (message) => ConfigError.InvalidData([name], message),
        onRight: Option.some
      })
    })
  )

const withDefault = <A>(config: Config.Config<Option.Option<A>>, fallback: A): Config.Config<A> =>
  Config.map(config, Option.getOrElse(() => fallback))

/** A secret: never part of an error message, blank counts as unset. */
const secret = (name: string, description: string): Config.Config<Option.Option<Redacted.Redacted<string>>> =>
  Config.redacted(name).pipe(
    Config.withDescription(description),
    Config.option,
    Config.map(Option.filter((r) => Redacted.value(r).trim().length > 0)),
    Config.map(Option.map((r) => Redacted.make(Redacted.value(r).trim())))
  )

const text: Parse<string> = (raw) => Either.right(raw)

const integer = (min: number, max: number, what: string): Parse<number> => (raw) => {
  const n = /^[0-9]+$/.test(raw) ? Number(raw) : NaN
  return Number.isSafeInteger(n) && n >= min && n <= max
    ? Either.right(n)
    : Either.left(`expected ${what}, got ${shown(raw)}`)
}
const positive = integer(1, Number.MAX_SAFE_INTEGER, "a positive integer")
const millis = (raw: string) =>
  Either.map(integer(1, Number.MAX_SAFE_INTEGER, "a positive integer of milliseconds")(raw), Duration.millis)
const port = integer(1, 65535, "an integer from 1 to 65535")

const httpUrl: Parse<string> = (raw) => {
  const url = URL.canParse(raw) ? new URL(raw) : undefined
  return url !== undefined && (url.protocol === "http:" || url.protocol === "https:") && url.username === "" &&
      url.password === ""
    ? Either.right(url.href.replace(/\/+$/, ""))
    : Either.left(`expected an http(s) URL without credentials, got ${shown(raw)}`)
}

const origin: Parse<string> = (raw) => {
  const url = URL.canParse(raw) ? new URL(raw) : undefined
  return url !== undefined && (url.protocol === "http:" || url.protocol === "https:") && url.pathname === "/" &&
      url.search === "" && url.hash === "" && url.username === "" && url.password === ""
    ? Either.right(url.origin)
    : Either.left(`expected an origin such as https://app.example.com (scheme, host and port only), got ${shown(raw)}`)
}

const list = <A>(each: Parse<A>): Parse<ReadonlyArray<A>> => (raw) => {
  const out: Array<A> = []
  for (const item of raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)) {
    const parsed = each(item)
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    out.push(parsed.right)
  }
  return out.length > 0 ? Either.right(out) : Either.left(`expected a comma-separated list, got ${shown(raw)}`)
}

const boolean: Parse<boolean> = (raw) => {
  const value = raw.toLowerCase()
  if (["true", "1", "yes", "on"].includes(value)) return Either.right(true)
  if (["false", "0", "no", "off"].includes(value)) return Either.right(false)
  return Either.left(`expected true or false, got ${shown(raw)}`)
}

const npi: Parse<Npi> = (raw) =>
  isValidNpi(raw)
    ? Either.right(raw as Npi)
    : Either.left(`expected a valid NPI (10 digits, first 1 or 2, CMS Luhn check digit), got ${shown(raw)}`)

const fields = {
  organizationNpi: variable("NEURON_ORGANIZATION_NPI", "the organization's NPI", npi),
  organizationName: variable("NEURON_ORGANIZATION_NAME", "the organization's name", text),
  organizationType: withDefault(variable("NEURON_ORGANIZATION_TYPE", "the organization's type", text), "practice"),
  host: withDefault(variable("NEURON_HOST", "where the Neuron listens", text), "127.0.0.1"),
  port: withDefault(variable("NEURON_PORT", "where the Neuron listens", port), 8700),
  publicUrl: variable("NEURON_PUBLIC_URL", "the endpoint announced to Axon (default http://<host>:<port>)", httpUrl),
  dataDir: withDefault(variable("NEURON_DATA_DIR", "SQLite file and health file", text), "./data"),
  registryUrls: withDefault(
    variable("AXON_REGISTRY_URL", "comma-separated Axon registries, tried in order (unset: embedded)", list(httpUrl)),
    []
  ),
  enrollmentToken: secret("AXON_ENROLLMENT_TOKEN", "sent when registering (and required by an embedded registry)"),
  heartbeatInterval: withDefault(
    variable("NEURON_HEARTBEAT_INTERVAL_MS", "the steady heartbeat interval", millis),
    Duration.millis(HEARTBEAT_INTERVAL_MS)
  ),
  backoffBase: withDefault(
    variable("NEURON_BACKOFF_BASE_MS", "first backoff delay after a failure", millis),
    Duration.millis(5_000)
  ),
  backoffCeiling: withDefault(
    variable("NEURON_BACKOFF_CEILING_MS", "largest backoff delay", millis),
    Duration.millis(240_000)
  ),
  axonTimeout: withDefault(
    variable("NEURON_AXON_TIMEOUT_MS", "one registry call's time limit", millis),
    Duration.millis(10_000)
  ),
  authTimeout: withDefault(
    variable("NEURON_AUTH_TIMEOUT_MS", "handshake auth timeout", millis),
    Duration.millis(10_000)
  ),
  maxConcurrentHandshakes: withDefault(
    variable("NEURON_MAX_CONCURRENT_HANDSHAKES", "the safety ceiling on handshakes", positive),
    1000
  ),
  queueTimeout: withDefault(
    variable("NEURON_QUEUE_TIMEOUT_MS", "how long a handshake may wait under the ceiling", millis),
    Duration.millis(30_000)
  ),
  maxPayloadBytes: withDefault(variable("NEURON_MAX_PAYLOAD_BYTES", "largest accepted frame", positive), 65536),
  adminToken: secret("NEURON_ADMIN_TOKEN", "admin API token (unset: admin routes answer loopback peers only)"),
  allowedOrigins: variable("NEURON_ALLOWED_ORIGINS", "comma-separated Origin allowlist (unset: any)", list(origin)),
  apiRateLimit: withDefault(
    variable("NEURON_API_RATE_LIMIT", "requests per minute per API key (the burst is the same)", positive),
    600
  ),
  mdns: withDefault(variable("NEURON_MDNS", "advertise the Neuron on the local network over mDNS", boolean), false),
  axonHost: withDefault(variable("AXON_HOST", "where the Axon registry listens", text), "127.0.0.1"),
  axonPort: withDefault(variable("AXON_PORT", "where the Axon registry listens", port), 8600),
  axonDataDir: variable("AXON_DATA_DIR", "the Axon registry's data folder (default <NEURON_DATA_DIR>/axon)", text)
}

/** Every variable the Neuron reads (the keys a config file may hold). */
export const VARIABLES: ReadonlySet<string> = new Set([
  "NEURON_ORGANIZATION_NPI",
  "NEURON_ORGANIZATION_NAME",
  "NEURON_ORGANIZATION_TYPE",
  "NEURON_HOST",
  "NEURON_PORT",
  "NEURON_PUBLIC_URL",
  "NEURON_DATA_DIR",
  "AXON_REGISTRY_URL",
  "AXON_ENROLLMENT_TOKEN",
  "NEURON_HEARTBEAT_INTERVAL_MS",
  "NEURON_BACKOFF_BASE_MS",
  "NEURON_BACKOFF_CEILING_MS",
  "NEURON_AXON_TIMEOUT_MS",
  "NEURON_AUTH_TIMEOUT_MS",
  "NEURON_MAX_CONCURRENT_HANDSHAKES",
  "NEURON_QUEUE_TIMEOUT_MS",
  "NEURON_MAX_PAYLOAD_BYTES",
  "NEURON_ADMIN_TOKEN",
  "NEURON_ALLOWED_ORIGINS",
  "NEURON_API_RATE_LIMIT",
  "NEURON_MDNS",
  "AXON_HOST",
  "AXON_PORT",
  "AXON_DATA_DIR"
])

const invalid = (name: string, message: string) => Either.left(ConfigError.InvalidData([name], message))

/** The Neuron's Config: read it with any ConfigProvider (`Effect.withConfigProvider`). */
export const neuronConfig: Config.Config<NeuronSettings> = Config.all(fields).pipe(
  Config.mapOrFail((f): Either.Either<NeuronSettings, ConfigError.ConfigError> => {
    if (Option.isSome(f.organizationNpi) && Option.isNone(f.organizationName)) {
      return invalid("NEURON_ORGANIZATION_NAME", "required when NEURON_ORGANIZATION_NPI is set")
    }
    if (Option.isNone(f.organizationNpi) && Option.isSome(f.organizationName)) {
      return invalid("NEURON_ORGANIZATION_NPI", "required when NEURON_ORGANIZATION_NAME is set")
    }
    if (Duration.lessThan(f.backoffCeiling, f.backoffBase)) {
      return invalid(
        "NEURON_BACKOFF_CEILING_MS",
        `must be at least NEURON_BACKOFF_BASE_MS (${Duration.toMillis(f.backoffBase)}), got ${
          Duration.toMillis(f.backoffCeiling)
        }`
      )
    }
    // An IPv6 literal needs brackets in a URL.
    const urlHost = f.host.includes(":") && !f.host.startsWith("[") ? `[${f.host}]` : f.host
    return Either.right({
      organization: Option.zipWith(f.organizationNpi, f.organizationName, (npi, name) => ({ npi, name })),
      organizationType: f.organizationType,
      host: f.host,
      port: f.port,
      publicUrl: Option.getOrElse(f.publicUrl, () => `http://${urlHost}:${f.port}`),
      dataDir: f.dataDir,
      registryUrls: f.registryUrls,
      enrollmentToken: f.enrollmentToken,
      heartbeatInterval: f.heartbeatInterval,
      backoffBase: f.backoffBase,
      backoffCeiling: f.backoffCeiling,
      axonTimeout: f.axonTimeout,
      authTimeout: f.authTimeout,
      maxConcurrentHandshakes: f.maxConcurrentHandshakes,
      queueTimeout: f.queueTimeout,
      maxPayloadBytes: f.maxPayloadBytes,
      adminToken: f.adminToken,
      allowedOrigins: f.allowedOrigins,
      apiRateLimit: f.apiRateLimit,
      mdns: f.mdns,
      axon: {
        host: f.axonHost,
        port: f.axonPort,
        dataDir: Option.getOrElse(f.axonDataDir, () => `${f.dataDir.replace(/\/+$/, "")}/axon`)
      },
      configFile: Option.none()
    })
  })
)

/** Where a config file is looked for when `NEURON_CONFIG_FILE` is unset: `neuron.conf` in the data folder. */
export const defaultConfigFile = (dataDir: string): string => `${dataDir.replace(/\/+$/, "")}/${DEFAULT_CONFIG_FILE}`

/**
 * The config file to read, if any: the one `NEURON_CONFIG_FILE` names (it must exist), or `neuron.conf` in the data
 * folder (`NEURON_DATA_DIR`, `./data` by default) when it exists.
 */
export const configFileOf = (
  variables: Record<string, string | undefined>
): Effect.Effect<Option.Option<string>, ConfigError.ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const env = fromVariables(variables)
    const named = yield* Effect.withConfigProvider(
      variable(CONFIG_FILE_VARIABLE, "a config file with the same keys; the environment wins", text),
      env
    )
    if (Option.isSome(named)) return named
    const dataDir = yield* Effect.withConfigProvider(fields.dataDir, env)
    const candidate = defaultConfigFile(dataDir)
    const fs = yield* FileSystem.FileSystem
    return (yield* fs.exists(candidate).pipe(Effect.orElseSucceed(() => false)))
      ? Option.some(candidate)
      : Option.none()
  })

/**
 * The settings from environment-like variables plus the config file (`configFileOf`), environment first, key by
 * key. Blank values count as unset.
 */
export const loadFromVariables = (
  variables: Record<string, string | undefined>
): Effect.Effect<NeuronSettings, ConfigError.ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const env = fromVariables(variables)
    const file = yield* configFileOf(variables)
    if (Option.isNone(file)) return yield* Effect.withConfigProvider(neuronConfig, env)
    const fileProvider = yield* fromFile(file.value, VARIABLES)
    const settings = yield* Effect.withConfigProvider(neuronConfig, ConfigProvider.orElse(env, () => fileProvider))
    return { ...settings, configFile: file }
  })

/** The settings a Neuron gets with nothing configured. */
export const defaults = (): NeuronSettings =>
  Effect.runSync(Effect.withConfigProvider(neuronConfig, ConfigProvider.fromMap(new Map())))

/** The Neuron's settings as a service. */
export class NeuronConfig extends Context.Tag("neuron/NeuronConfig")<NeuronConfig, NeuronSettings>() {
  /** Given settings, as they are. */
  static readonly layer = (settings: NeuronSettings): Layer.Layer<NeuronConfig> => Layer.succeed(NeuronConfig, settings)
  /** From a Config, read with the current ConfigProvider (tests: `Layer.provide(Layer.setConfigProvider(...))`). */
  static readonly layerConfig = (
    config: Config.Config<NeuronSettings> = neuronConfig
  ): Layer.Layer<NeuronConfig, ConfigError.ConfigError> => Layer.effect(NeuronConfig, config)
  /** From `process.env` and the optional config file; print failures with `describeConfigError`. */
  static readonly layerFromEnv: Layer.Layer<NeuronConfig, ConfigError.ConfigError, FileSystem.FileSystem> = Layer
    .effect(NeuronConfig, Effect.suspend(() => loadFromVariables(process.env)))
  /** The defaults with some settings replaced, for tests. */
  static readonly layerTest = (overrides: Partial<NeuronSettings> = {}): Layer.Layer<NeuronConfig> =>
    Layer.sync(NeuronConfig, () => ({ ...defaults(), ...overrides }))
}

export { describeConfigError } from "./ConfigFile.js"

/**
 * The client's settings from the environment (PROTOCOL.md section 5): `AXON_REGISTRY_URL` (a comma-separated
 * list, tried in order on failover), `NEURON_AXON_TIMEOUT_MS` and `AXON_ENROLLMENT_TOKEN`.
 */
import * as Arr from "effect/Array"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import type { AxonClientOptions } from "./AxonClient.js"

/** Default time limit of one registry call. */
export const AXON_TIMEOUT_MS = 10_000

const checkUrl = (text: string): Either.Either<string, string> => {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return Either.left(`"${text}" is not a URL`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return Either.left(`"${text}" must be http(s)://`)
  // The URL goes into logs and errors: credentials have no place in it (use AXON_ENROLLMENT_TOKEN).
  if (url.username !== "" || url.password !== "") return Either.left(`a registry URL must not carry credentials`)
  if (url.search !== "" || url.hash !== "") return Either.left(`"${text}" must have no query or fragment`)
  return Either.right(`${url.origin}${url.pathname.replace(/\/+$/, "")}`)
}

/**
 * Reads a comma-separated list of registry base URLs: each `http(s)://`, without credentials, query or
 * fragment; trailing slashes removed; duplicates dropped. Fails with a message naming the bad entry.
 */
export const parseRegistryUrls = (text: string): Either.Either<Arr.NonEmptyReadonlyArray<string>, string> => {
  const entries = text.split(",").map((s) => s.trim()).filter((s) => s !== "")
  const urls: Array<string> = []
  for (const entry of entries) {
    const checked = checkUrl(entry)
    if (Either.isLeft(checked)) return Either.left(checked.left)
    if (!urls.includes(checked.right)) urls.push(checked.right)
  }
  return Arr.isNonEmptyReadonlyArray(urls) ? Either.right(urls) : Either.left("must list at least one registry URL")
}

/** `AXON_REGISTRY_URL`, validated. */
export const registryUrls: Config.Config<Arr.NonEmptyReadonlyArray<string>> = Config.string("AXON_REGISTRY_URL").pipe(
  Config.mapOrFail((text) =>
    Either.mapLeft(parseRegistryUrls(text), (message) => ConfigError.InvalidData(["AXON_REGISTRY_URL"], message))
  ),
  Config.withDescription("Axon registry base URLs, comma-separated; the Neuron fails over from one to the next")
)

/** `NEURON_AXON_TIMEOUT_MS`: one registry call's time limit. */
export const axonTimeout: Config.Config<Duration.Duration> = Config.integer("NEURON_AXON_TIMEOUT_MS").pipe(
  Config.validate({ message: "must be a positive number of milliseconds", validation: (n) => n > 0 }),
  Config.withDefault(AXON_TIMEOUT_MS),
  Config.map(Duration.millis),
  Config.withDescription("time limit of one Axon registry call, in milliseconds")
)

/** `AXON_ENROLLMENT_TOKEN`: sent when registering, never logged. */
export const enrollmentToken = Config.option(Config.redacted("AXON_ENROLLMENT_TOKEN")).pipe(
  Config.withDescription("enrollment token sent as the bearer token of a registration")
)

/** All of the client's settings. */
export const axonClientConfig: Config.Config<AxonClientOptions> = Config.all({
  urls: registryUrls,
  timeout: axonTimeout,
  enrollmentToken
})

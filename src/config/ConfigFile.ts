/**
 * The optional config file (named by `NEURON_CONFIG_FILE`, or `neuron.conf` in the data folder), and the one-line
 * description of a `ConfigError`.
 *
 * The file holds the same keys as the environment, in one of two formats told apart by its first character:
 * - JSON (`{"NEURON_PORT": 8701, "AXON_REGISTRY_URL": ["https://a", "https://b"]}`), which holds no comments;
 * - an environment file, which `neuron init` writes because it holds comments: `KEY=value` lines, blank lines and
 *   lines starting with `#` ignored, a value optionally in single or double quotes, no inline comments (a `#` in a
 *   value is part of it: tokens may contain one). systemd's `EnvironmentFile=` reads the same lines.
 * The environment wins key by key (`ConfigProvider.orElse`). Every leaf of the Neuron's config is read as a string
 * and validated afterwards, so that `orElse` falls back to the file only for a variable that is missing, never for
 * one that is set but invalid.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"

/** The variable that names the config file. */
export const CONFIG_FILE_VARIABLE = "NEURON_CONFIG_FILE"

/** The config file read from the data folder when `NEURON_CONFIG_FILE` is unset (what `neuron init` writes). */
export const DEFAULT_CONFIG_FILE = "neuron.conf"

const fileError = (message: string) => ConfigError.InvalidData([CONFIG_FILE_VARIABLE], message)

/** One JSON value as the string an environment variable would hold (lists become comma-separated). */
const asVariable = (key: string, value: unknown): string | undefined | ConfigError.ConfigError => {
  if (value === null) return undefined
  if (typeof value === "string") return value
  if ((typeof value === "number" && Number.isFinite(value)) || typeof value === "boolean") return String(value)
  if (Array.isArray(value) && value.every((v) => typeof v === "string" || typeof v === "number")) {
    return value.join(",")
  }
  // The value itself is never echoed: the key may be a secret.
  return fileError(`key "${key}" must be a string, a number, a boolean or a list of strings`)
}

const parseJson = (path: string, text: string, knownKeys: ReadonlySet<string>) => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return fileError(`${JSON.stringify(path)} is not valid JSON (${(e as Error).message})`)
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return fileError(`${JSON.stringify(path)} must hold one JSON object of variable names`)
  }
  const out = new Map<string, string>()
  for (const [key, value] of Object.entries(json)) {
    if (!knownKeys.has(key)) return fileError(`${JSON.stringify(path)}: unknown key ${JSON.stringify(key)}`)
    const v = asVariable(key, value)
    if (ConfigError.isConfigError(v)) return v
    if (v !== undefined) out.set(key, v)
  }
  return out
}

/** One environment-file value: surrounding quotes removed (`\"` and `\\` unescaped inside double quotes). */
const unquote = (raw: string): string | undefined => {
  if (raw.length >= 2 && raw.startsWith("'") && raw.endsWith("'")) return raw.slice(1, -1)
  if (raw.length >= 2 && raw.startsWith(`"`) && raw.endsWith(`"`)) return raw.slice(1, -1).replace(/\\(["\\])/g, "$1")
  return raw.startsWith("'") || raw.startsWith(`"`) ? undefined : raw
}

const parseEnvironmentFile = (path: string, text: string, knownKeys: ReadonlySet<string>) => {
  const out = new Map<string, string>()
  const seenAt = new Map<string, number>()
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (line === "" || line.startsWith("#")) continue
    const where = `${JSON.stringify(path)} line ${i + 1}`
    const match = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line)
    // The line itself is never echoed: it may hold a secret.
    if (match === null) return fileError(`${where}: expected KEY=value, a comment (#) or a blank line`)
    const [, key, raw] = match as unknown as [string, string, string]
    if (!knownKeys.has(key)) return fileError(`${where}: unknown key ${JSON.stringify(key)}`)
    const first = seenAt.get(key)
    if (first !== undefined) return fileError(`${where}: ${key} is already set on line ${first}`)
    seenAt.set(key, i + 1)
    const value = unquote(raw)
    if (value === undefined) return fileError(`${where}: the value of ${key} has an unclosed quote`)
    if (value.trim() !== "") out.set(key, value)
  }
  return out
}

/**
 * The variables of a config file (JSON when it starts with `{` or `[`, else an environment file), refusing keys
 * the Neuron does not know (a typo would otherwise be silently ignored).
 */
export const parseConfigFile = (
  path: string,
  text: string,
  knownKeys: ReadonlySet<string>
): Effect.Effect<Map<string, string>, ConfigError.ConfigError> =>
  Effect.suspend(() => {
    const parsed = /^\s*[[{]/.test(text)
      ? parseJson(path, text, knownKeys)
      : parseEnvironmentFile(path, text, knownKeys)
    return ConfigError.isConfigError(parsed) ? Effect.fail(parsed) : Effect.succeed(parsed)
  })

/** A ConfigProvider over the config file at `path` (either format). */
export const fromFile = (
  path: string,
  knownKeys: ReadonlySet<string>
): Effect.Effect<ConfigProvider.ConfigProvider, ConfigError.ConfigError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError((e) =>
      ConfigError.SourceUnavailable(
        [CONFIG_FILE_VARIABLE],
        `cannot read ${JSON.stringify(path)} (${e._tag === "SystemError" ? e.reason : e.message})`,
        Cause.fail(e)
      )
    ),
    Effect.flatMap((text) => parseConfigFile(path, text, knownKeys)),
    Effect.map((map) => ConfigProvider.fromMap(map))
  )

/**
 * A ConfigProvider over environment-like variables, where an empty (or blank) value counts as unset so that it
 * falls through to the config file and the default.
 */
export const fromVariables = (variables: Record<string, string | undefined>): ConfigProvider.ConfigProvider => {
  const map = new Map<string, string>()
  for (const [key, value] of Object.entries(variables)) {
    if (value !== undefined && value.trim() !== "") map.set(key, value)
  }
  return ConfigProvider.fromMap(map)
}

interface Problem {
  readonly variable: string
  readonly message: string
}

const problems = (error: ConfigError.ConfigError): ReadonlyArray<Problem> => {
  switch (error._op) {
    case "And":
      return [...problems(error.left), ...problems(error.right)]
    case "Or":
      // `orElse` (environment, then file) reports both sides; a missing side says less than an invalid one.
      if (ConfigError.isMissingDataOnly(error.left)) return problems(error.right)
      return problems(error.left)
    case "MissingData":
      // Effect's own message ("Expected X to exist in the process context") says less than ours would.
      return [{
        variable: error.path.join("_"),
        message: error.message.startsWith("Expected ") || error.message === "" ? "is required" : error.message
      }]
    case "InvalidData":
    case "SourceUnavailable":
    case "Unsupported":
      return [{ variable: error.path.join("_"), message: error.message }]
  }
}

/**
 * A ConfigError as one line for a person, naming each variable once:
 * `NEURON_PORT: expected an integer from 1 to 65535, got "abc"`.
 */
export const describeConfigError = (error: ConfigError.ConfigError): string => {
  const seen = new Set<string>()
  const lines: Array<string> = []
  for (const p of problems(error)) {
    const line = p.variable === "" ? p.message : `${p.variable}: ${p.message}`
    if (seen.has(p.variable)) continue
    seen.add(p.variable)
    lines.push(line.replace(/\s*\n\s*/g, " "))
  }
  return lines.length === 0 ? "invalid configuration" : lines.join("; ")
}

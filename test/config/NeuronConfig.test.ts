import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { inspect } from "node:util"
import * as ConfigTemplate from "../../src/config/ConfigTemplate.js"
import {
  defaults,
  describeConfigError,
  HEARTBEAT_INTERVAL_MS,
  loadFromVariables,
  NeuronConfig,
  neuronConfig,
  VARIABLES
} from "../../src/config/NeuronConfig.js"
import { makeTempDir } from "../../src/sql/Sqlite.js"

const load = (variables: Record<string, string | undefined>) =>
  loadFromVariables(variables).pipe(Effect.provide(NodeContext.layer))

/** The one line a person would read for these variables (fails the test if they load). */
const errorLine = (variables: Record<string, string | undefined>) =>
  load(variables).pipe(
    Effect.flip,
    Effect.map(describeConfigError),
    Effect.tap((line) => assert.notInclude(line, "\n"))
  )

const ms = Duration.toMillis

describe("NeuronConfig defaults", () => {
  it.effect("with nothing set: the defaults of PROTOCOL.md section 5", () =>
    Effect.gen(function*() {
      const c = yield* load({})
      assert.isTrue(Option.isNone(c.organization))
      assert.strictEqual(c.organizationType, "practice")
      assert.strictEqual(c.host, "127.0.0.1")
      assert.strictEqual(c.port, 8700)
      assert.strictEqual(c.publicUrl, "http://127.0.0.1:8700")
      assert.strictEqual(c.dataDir, "./data")
      assert.deepStrictEqual(c.registryUrls, [])
      assert.isTrue(Option.isNone(c.enrollmentToken))
      assert.strictEqual(ms(c.heartbeatInterval), HEARTBEAT_INTERVAL_MS)
      assert.strictEqual(HEARTBEAT_INTERVAL_MS, 60_000)
      assert.strictEqual(ms(c.backoffBase), 5_000)
      assert.strictEqual(ms(c.backoffCeiling), 240_000)
      assert.strictEqual(ms(c.axonTimeout), 10_000)
      assert.strictEqual(ms(c.authTimeout), 10_000)
      assert.strictEqual(c.maxConcurrentHandshakes, 1000)
      assert.strictEqual(ms(c.queueTimeout), 30_000)
      assert.strictEqual(c.maxPayloadBytes, 65536)
      assert.isTrue(Option.isNone(c.adminToken))
      assert.isTrue(Option.isNone(c.allowedOrigins))
      assert.strictEqual(c.apiRateLimit, 600)
      assert.deepStrictEqual(c.axon, { host: "127.0.0.1", port: 8600, dataDir: "./data/axon" })
      assert.isTrue(Option.isNone(c.configFile))
      assert.deepStrictEqual(c, defaults())
    }))

  it.effect("blank values count as unset; the public URL follows host and port (IPv6 in brackets)", () =>
    Effect.gen(function*() {
      const c = yield* load({
        NEURON_PORT: "  ",
        NEURON_HOST: "::1",
        NEURON_ADMIN_TOKEN: "",
        NEURON_DATA_DIR: "/var/n/"
      })
      assert.strictEqual(c.port, 8700)
      assert.strictEqual(c.publicUrl, "http://[::1]:8700")
      assert.isTrue(Option.isNone(c.adminToken))
      assert.strictEqual(c.axon.dataDir, "/var/n/axon")
    }))
})

describe("NeuronConfig: every variable parsed", () => {
  it.effect("reads each variable of section 5", () =>
    Effect.gen(function*() {
      const c = yield* load({
        NEURON_ORGANIZATION_NPI: "1234567893",
        NEURON_ORGANIZATION_NAME: " Main Street Clinic ",
        NEURON_ORGANIZATION_TYPE: "hospital",
        NEURON_HOST: "0.0.0.0",
        NEURON_PORT: "8701",
        NEURON_PUBLIC_URL: "https://neuron.example.org/",
        NEURON_DATA_DIR: "/srv/neuron",
        AXON_REGISTRY_URL: "https://a.example.org/, http://b.example.org:8600",
        AXON_ENROLLMENT_TOKEN: "enroll-SECRET-1",
        NEURON_HEARTBEAT_INTERVAL_MS: "30000",
        NEURON_BACKOFF_BASE_MS: "1000",
        NEURON_BACKOFF_CEILING_MS: "120000",
        NEURON_AXON_TIMEOUT_MS: "2500",
        NEURON_AUTH_TIMEOUT_MS: "4000",
        NEURON_MAX_CONCURRENT_HANDSHAKES: "50",
        NEURON_QUEUE_TIMEOUT_MS: "700",
        NEURON_MAX_PAYLOAD_BYTES: "1024",
        NEURON_ADMIN_TOKEN: "admin-SECRET-2",
        NEURON_ALLOWED_ORIGINS: "https://app.example.org, http://localhost:3000/",
        NEURON_API_RATE_LIMIT: "120",
        NEURON_MDNS: "true",
        AXON_HOST: "0.0.0.0",
        AXON_PORT: "8601",
        AXON_DATA_DIR: "/srv/axon"
      })
      assert.deepStrictEqual(
        Option.getOrThrow(c.organization),
        { npi: "1234567893", name: "Main Street Clinic" } as any
      )
      assert.strictEqual(c.organizationType, "hospital")
      assert.strictEqual(c.host, "0.0.0.0")
      assert.strictEqual(c.port, 8701)
      assert.strictEqual(c.publicUrl, "https://neuron.example.org")
      assert.strictEqual(c.dataDir, "/srv/neuron")
      assert.deepStrictEqual(c.registryUrls, ["https://a.example.org", "http://b.example.org:8600"])
      assert.strictEqual(Redacted.value(Option.getOrThrow(c.enrollmentToken)), "enroll-SECRET-1")
      assert.strictEqual(ms(c.heartbeatInterval), 30000)
      assert.strictEqual(ms(c.backoffBase), 1000)
      assert.strictEqual(ms(c.backoffCeiling), 120000)
      assert.strictEqual(ms(c.axonTimeout), 2500)
      assert.strictEqual(ms(c.authTimeout), 4000)
      assert.strictEqual(c.maxConcurrentHandshakes, 50)
      assert.strictEqual(ms(c.queueTimeout), 700)
      assert.strictEqual(c.maxPayloadBytes, 1024)
      assert.strictEqual(Redacted.value(Option.getOrThrow(c.adminToken)), "admin-SECRET-2")
      assert.strictEqual(c.apiRateLimit, 120)
      assert.deepStrictEqual(Option.getOrThrow(c.allowedOrigins), ["https://app.example.org", "http://localhost:3000"])
      assert.deepStrictEqual(c.axon, { host: "0.0.0.0", port: 8601, dataDir: "/srv/axon" })
      assert.strictEqual(c.mdns, true)
      // NEURON_MDNS is off unless asked for.
      assert.strictEqual(defaults().mdns, false)
    }))

  it.effect("the Config also reads through any ConfigProvider (ConfigProvider.fromMap)", () =>
    Effect.gen(function*() {
      const c = yield* Effect.withConfigProvider(neuronConfig, ConfigProvider.fromMap(new Map([["NEURON_PORT", "9"]])))
      assert.strictEqual(c.port, 9)
      const fromLayer = yield* NeuronConfig.pipe(
        Effect.provide(
          NeuronConfig.layerConfig().pipe(
            Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["NEURON_PORT", "10"]]))))
          )
        )
      )
      assert.strictEqual(fromLayer.port, 10)
      const test = yield* NeuronConfig.pipe(Effect.provide(NeuronConfig.layerTest({ dataDir: "/tmp/x" })))
      assert.deepStrictEqual(test, { ...defaults(), dataDir: "/tmp/x" })
    }))
})

describe("NeuronConfig: a bad value is one line naming the variable", () => {
  it.effect("names the variable, says what was expected, and shows what was given", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [Record<string, string>, string]> = [
        [{ NEURON_PORT: "abc" }, `NEURON_PORT: expected an integer from 1 to 65535, got "abc"`],
        [{ NEURON_PORT: "70000" }, `NEURON_PORT: expected an integer from 1 to 65535, got "70000"`],
        [{ AXON_PORT: "0" }, `AXON_PORT: expected an integer from 1 to 65535, got "0"`],
        [
          { NEURON_HEARTBEAT_INTERVAL_MS: "-5" },
          `NEURON_HEARTBEAT_INTERVAL_MS: expected a positive integer of milliseconds, got "-5"`
        ],
        [
          { NEURON_AXON_TIMEOUT_MS: "1.5" },
          `NEURON_AXON_TIMEOUT_MS: expected a positive integer of milliseconds, got "1.5"`
        ],
        [{ NEURON_MAX_PAYLOAD_BYTES: "0" }, `NEURON_MAX_PAYLOAD_BYTES: expected a positive integer, got "0"`],
        [{ NEURON_API_RATE_LIMIT: "0" }, `NEURON_API_RATE_LIMIT: expected a positive integer, got "0"`],
        [
          { NEURON_MAX_CONCURRENT_HANDSHAKES: "lots" },
          `NEURON_MAX_CONCURRENT_HANDSHAKES: expected a positive integer, got "lots"`
        ],
        [
          { AXON_REGISTRY_URL: "https://a.example.org,ftp://b" },
          `AXON_REGISTRY_URL: expected an http(s) URL without credentials, got "ftp://b"`
        ],
        [{ AXON_REGISTRY_URL: " , " }, `AXON_REGISTRY_URL: expected a comma-separated list, got ","`],
        [
          { NEURON_PUBLIC_URL: "neuron:8700" },
          `NEURON_PUBLIC_URL: expected an http(s) URL without credentials, got "neuron:8700"`
        ],
        [
          { NEURON_ALLOWED_ORIGINS: "https://app.example.org/path" },
          `NEURON_ALLOWED_ORIGINS: expected an origin such as https://app.example.com (scheme, host and port only), got "https://app.example.org/path"`
        ],
        [
          { NEURON_ORGANIZATION_NPI: "1234567898", NEURON_ORGANIZATION_NAME: "X" },
          `NEURON_ORGANIZATION_NPI: expected a valid NPI (10 digits, first 1 or 2, CMS Luhn check digit), got "1234567898"`
        ],
        [{ NEURON_MDNS: "maybe" }, `NEURON_MDNS: expected true or false, got "maybe"`],
        [
          { NEURON_BACKOFF_BASE_MS: "10000", NEURON_BACKOFF_CEILING_MS: "5000" },
          `NEURON_BACKOFF_CEILING_MS: must be at least NEURON_BACKOFF_BASE_MS (10000), got 5000`
        ]
      ]
      for (const [variables, line] of cases) {
        assert.strictEqual(yield* errorLine(variables), line)
      }
    }))

  it.effect("organization NPI and name are required together", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* errorLine({ NEURON_ORGANIZATION_NPI: "1234567893" }),
        "NEURON_ORGANIZATION_NAME: required when NEURON_ORGANIZATION_NPI is set"
      )
      assert.strictEqual(
        yield* errorLine({ NEURON_ORGANIZATION_NAME: "Main Street Clinic" }),
        "NEURON_ORGANIZATION_NPI: required when NEURON_ORGANIZATION_NAME is set"
      )
    }))

  it.effect("several bad values: still one line, each variable named once", () =>
    Effect.gen(function*() {
      const line = yield* errorLine({ NEURON_PORT: "x", NEURON_AUTH_TIMEOUT_MS: "y" })
      assert.include(line, `NEURON_PORT: expected an integer from 1 to 65535, got "x"`)
      assert.include(line, `NEURON_AUTH_TIMEOUT_MS: expected a positive integer of milliseconds, got "y"`)
    }))
})

describe("NeuronConfig: the config file (NEURON_CONFIG_FILE)", () => {
  const withFile = (json: unknown) =>
    Effect.gen(function*() {
      const path = `${yield* makeTempDir()}/neuron.json`
      const fs = yield* FileSystem.FileSystem
      yield* fs.writeFileString(path, typeof json === "string" ? json : JSON.stringify(json))
      return path
    }).pipe(Effect.provide(NodeContext.layer))

  it.scoped("adds the same keys under the environment: the environment wins key by key", () =>
    Effect.gen(function*() {
      const path = yield* withFile({
        NEURON_PORT: 9000,
        NEURON_HOST: "0.0.0.0",
        AXON_REGISTRY_URL: ["https://a.example.org", "https://b.example.org"],
        NEURON_ADMIN_TOKEN: "admin-SECRET-FILE",
        NEURON_ALLOWED_ORIGINS: null
      })
      const c = yield* load({ NEURON_CONFIG_FILE: path, NEURON_PORT: "9100", NEURON_DATA_DIR: "" })
      assert.strictEqual(c.port, 9100)
      assert.strictEqual(c.host, "0.0.0.0")
      assert.strictEqual(c.publicUrl, "http://0.0.0.0:9100")
      assert.deepStrictEqual(c.registryUrls, ["https://a.example.org", "https://b.example.org"])
      assert.strictEqual(Redacted.value(Option.getOrThrow(c.adminToken)), "admin-SECRET-FILE")
      assert.strictEqual(c.dataDir, "./data")
      assert.deepStrictEqual(c.configFile, Option.some(path))
    }))

  it.scoped("an invalid environment value is an error even when the file has a valid one", () =>
    Effect.gen(function*() {
      const path = yield* withFile({ NEURON_PORT: 9000 })
      assert.strictEqual(
        yield* errorLine({ NEURON_CONFIG_FILE: path, NEURON_PORT: "nine" }),
        `NEURON_PORT: expected an integer from 1 to 65535, got "nine"`
      )
      const fromFile = yield* withFile({ NEURON_PORT: "nine" })
      assert.strictEqual(
        yield* errorLine({ NEURON_CONFIG_FILE: fromFile }),
        `NEURON_PORT: expected an integer from 1 to 65535, got "nine"`
      )
    }))

  it.scoped("a missing file, bad JSON, an unknown key or a nested value: one line naming NEURON_CONFIG_FILE", () =>
    Effect.gen(function*() {
      assert.match(
        yield* errorLine({ NEURON_CONFIG_FILE: "/nonexistent/neuron.json" }),
        /^NEURON_CONFIG_FILE: cannot read "\/nonexistent\/neuron.json"/
      )
      assert.match(
        yield* errorLine({ NEURON_CONFIG_FILE: yield* withFile("{nope") }),
        /^NEURON_CONFIG_FILE: ".*" is not valid JSON/
      )
      assert.match(
        yield* errorLine({ NEURON_CONFIG_FILE: yield* withFile([1]) }),
        /^NEURON_CONFIG_FILE: ".*" must hold one JSON object/
      )
      assert.match(
        yield* errorLine({ NEURON_CONFIG_FILE: yield* withFile({ NEURON_PROT: 1 }) }),
        /^NEURON_CONFIG_FILE: ".*": unknown key "NEURON_PROT"$/
      )
      const nested = yield* errorLine({
        NEURON_CONFIG_FILE: yield* withFile({ NEURON_ADMIN_TOKEN: { v: "admin-SECRET-3" } })
      })
      assert.strictEqual(
        nested,
        `NEURON_CONFIG_FILE: key "NEURON_ADMIN_TOKEN" must be a string, a number, a boolean or a list of strings`
      )
    }))

  it.effect("layerFromEnv reads process.env", () =>
    Effect.gen(function*() {
      const before = process.env.NEURON_PORT
      process.env.NEURON_PORT = "8777"
      const c = yield* NeuronConfig.pipe(
        Effect.provide(NeuronConfig.layerFromEnv.pipe(Layer.provide(NodeContext.layer))),
        Effect.ensuring(
          Effect.sync(() => before === undefined ? delete process.env.NEURON_PORT : process.env.NEURON_PORT = before)
        )
      )
      assert.strictEqual(c.port, 8777)
    }))
})

describe("NeuronConfig: secrets stay Redacted", () => {
  it.effect("tokens never appear in String(config), its JSON, util.inspect, or an error line", () =>
    Effect.gen(function*() {
      const secrets = { AXON_ENROLLMENT_TOKEN: "enroll-SECRET-1", NEURON_ADMIN_TOKEN: "admin-SECRET-2" }
      const c = yield* load(secrets)
      for (const shown of [String(c), JSON.stringify(c), inspect(c, { depth: 10 }), String(c.adminToken)]) {
        assert.notInclude(shown, "SECRET")
      }
      const line = yield* errorLine({ ...secrets, NEURON_PORT: "x" })
      assert.notInclude(line, "SECRET")
    }))

  it("describeConfigError: a missing variable is 'is required'; of environment-or-file, the invalid side is shown", () => {
    assert.strictEqual(
      describeConfigError(ConfigError.MissingData(["NEURON_ORGANIZATION_NPI"], "Expected NEURON_ORGANIZATION_NPI")),
      "NEURON_ORGANIZATION_NPI: is required"
    )
    const either = ConfigError.Or(
      ConfigError.MissingData(["NEURON_PORT"], "missing"),
      ConfigError.InvalidData(["NEURON_PORT"], "expected an integer from 1 to 65535, got \"x\"")
    )
    assert.strictEqual(describeConfigError(either), `NEURON_PORT: expected an integer from 1 to 65535, got "x"`)
  })
})

describe("NeuronConfig: the commented environment file (what neuron init writes) and neuron.conf in the data folder", () => {
  const write = (name: string, text: string, dir?: string) =>
    Effect.gen(function*() {
      const folder = dir ?? (yield* makeTempDir())
      const fs = yield* FileSystem.FileSystem
      yield* fs.writeFileString(`${folder}/${name}`, text)
      return { dir: folder, path: `${folder}/${name}` }
    }).pipe(Effect.provide(NodeContext.layer))

  it.scoped("KEY=value lines, # comments, blank lines, quotes (a # inside a value is kept); the environment still wins", () =>
    Effect.gen(function*() {
      const { path } = yield* write(
        "neuron.conf",
        [
          "# a comment",
          "",
          "   # an indented comment",
          "NEURON_PORT = 9001",
          `NEURON_ORGANIZATION_NAME="Riverside \\"Family\\" Practice"`,
          "NEURON_ORGANIZATION_NPI='1234567893'",
          "NEURON_ADMIN_TOKEN=admin#SECRET#env",
          "AXON_REGISTRY_URL=https://a.example.org, https://b.example.org",
          "NEURON_ALLOWED_ORIGINS=",
          "NEURON_HOST=0.0.0.0\r",
          ""
        ].join("\n")
      )
      const c = yield* load({ NEURON_CONFIG_FILE: path, NEURON_HOST: "127.0.0.2" })
      assert.strictEqual(c.port, 9001)
      assert.deepStrictEqual(
        c.organization,
        Option.some({ npi: "1234567893", name: `Riverside "Family" Practice` }) as typeof c.organization
      )
      assert.strictEqual(Redacted.value(Option.getOrThrow(c.adminToken)), "admin#SECRET#env")
      assert.deepStrictEqual(c.registryUrls, ["https://a.example.org", "https://b.example.org"])
      assert.isTrue(Option.isNone(c.allowedOrigins))
      assert.strictEqual(c.host, "127.0.0.2")
    }))

  it.scoped("a bad line, an unknown key, a key set twice or an unclosed quote: one line naming the file and line, never the value", () =>
    Effect.gen(function*() {
      const cases = [
        ["NEURON_PORT=9001\nnot a setting SECRET-1\n", /line 2: expected KEY=value, a comment \(#\) or a blank line$/],
        ["# ok\nNEURON_PROT=9001\n", /line 2: unknown key "NEURON_PROT"$/],
        [
          "NEURON_ADMIN_TOKEN=a-SECRET-2\n\nNEURON_ADMIN_TOKEN=b-SECRET-3\n",
          /line 3: NEURON_ADMIN_TOKEN is already set on line 1$/
        ],
        [`NEURON_ADMIN_TOKEN="c-SECRET-4\n`, /line 1: the value of NEURON_ADMIN_TOKEN has an unclosed quote$/]
      ] as const
      for (const [text, pattern] of cases) {
        const { path } = yield* write("neuron.conf", text)
        const line = yield* errorLine({ NEURON_CONFIG_FILE: path })
        assert.match(line, /^NEURON_CONFIG_FILE: ".*neuron\.conf" line \d/)
        assert.match(line, pattern)
        assert.notInclude(line, "SECRET")
      }
    }))

  it.scoped("neuron.conf in the data folder is read when NEURON_CONFIG_FILE is unset; NEURON_CONFIG_FILE wins over it", () =>
    Effect.gen(function*() {
      const { dir, path } = yield* write("neuron.conf", "NEURON_PORT=9002\n")
      const found = yield* load({ NEURON_DATA_DIR: dir })
      assert.strictEqual(found.port, 9002)
      assert.deepStrictEqual(found.configFile, Option.some(path))
      const other = yield* write("other.conf", "NEURON_PORT=9003\n")
      const named = yield* load({ NEURON_DATA_DIR: dir, NEURON_CONFIG_FILE: other.path })
      assert.strictEqual(named.port, 9003)
      const none = yield* load({ NEURON_DATA_DIR: yield* makeTempDir() })
      assert.isTrue(Option.isNone(none.configFile))
      assert.strictEqual(none.port, 8700)
    }))

  it.scoped("the file neuron init writes loads: the defaults plus its admin token; every line uncommented at its default loads to the same settings; it lists every setting the Neuron reads", () =>
    Effect.gen(function*() {
      const token = "init-SECRET-token-0123456789"
      const { dir, path } = yield* write("neuron.conf", ConfigTemplate.render({ NEURON_ADMIN_TOKEN: token }))
      const loaded = yield* load({ NEURON_DATA_DIR: dir })
      assert.strictEqual(Redacted.value(Option.getOrThrow(loaded.adminToken)), token)
      const expected = { ...defaults(), dataDir: dir, axon: { ...defaults().axon, dataDir: `${dir}/axon` } }
      assert.deepStrictEqual({ ...loaded, adminToken: Option.none(), configFile: Option.none() }, expected)
      assert.deepStrictEqual(loaded.configFile, Option.some(path))

      // Uncomment every line of a setting this Neuron reads whose default is written as a value.
      const fs = yield* FileSystem.FileSystem
      const text = yield* fs.readFileString(path)
      const uncommented = text.split("\n").map((line) => {
        const m = /^# ([A-Z_]+)=(.+)$/.exec(line)
        return m !== null && VARIABLES.has(m[1]!) && m[1] !== "NEURON_DATA_DIR" ? `${m[1]}=${m[2]}` : line
      })
      assert.isAtLeast(uncommented.filter((l, i) => l !== text.split("\n")[i]).length, 10)
      yield* fs.writeFileString(path, uncommented.join("\n"))
      const same = yield* load({ NEURON_DATA_DIR: dir })
      assert.deepStrictEqual(same, loaded)

      for (const key of VARIABLES) assert.include(ConfigTemplate.TEMPLATE_KEYS, key)
    }).pipe(Effect.provide(NodeContext.layer)))
})

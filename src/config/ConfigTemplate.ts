/**
 * The commented configuration file that `neuron init` writes: every setting of PROTOCOL.md section 5 with its
 * default, in the environment-file format the config loader reads (ConfigFile.ts). Every setting is written
 * commented out, so that the file changes nothing until the operator edits it and a default that changes in a
 * later version is not pinned by an old file; the one exception is a freshly generated admin token, so that the
 * admin API needs it from the start and the `neuron` command (which reads the same file) has it.
 */

/** One setting: its variable, its default (`""`: unset; with `<...>`: derived from other settings), what it means. */
export interface TemplateSetting {
  readonly key: string
  readonly fallback: string
  readonly about: ReadonlyArray<string>
}

/** A group of settings under a heading. */
export interface TemplateSection {
  readonly heading: string
  readonly settings: ReadonlyArray<TemplateSetting>
}

const s = (key: string, fallback: string, ...about: ReadonlyArray<string>): TemplateSetting => ({
  key,
  fallback,
  about
})

/** Every setting of section 5, grouped as an operator meets them. */
export const SECTIONS: ReadonlyArray<TemplateSection> = [
  {
    heading: "The organization",
    settings: [
      s(
        "NEURON_ORGANIZATION_NPI",
        "",
        "The organization's NPI (10 digits). Required with AXON_REGISTRY_URL; with the embedded registry a",
        "development organization is used (and logged) when unset."
      ),
      s("NEURON_ORGANIZATION_NAME", "", "The organization's name. Required with NEURON_ORGANIZATION_NPI."),
      s("NEURON_ORGANIZATION_TYPE", "practice", "The organization's type.")
    ]
  },
  {
    heading: "Where the Neuron listens and what it announces",
    settings: [
      s("NEURON_HOST", "127.0.0.1", "Interface of the HTTP API and the handshake WebSocket (0.0.0.0: all)."),
      s("NEURON_PORT", "8700", "Port of the HTTP API and the handshake WebSocket."),
      s(
        "NEURON_PUBLIC_URL",
        "http://<host>:<port>",
        "The endpoint announced to the registry: what patients' CareAgents connect to (behind a proxy: its URL)."
      ),
      s(
        "NEURON_DATA_DIR",
        "./data",
        "neuron.db (SQLite) and neuron.health.json. This file is read from the data folder, so set the data",
        "folder itself in the environment (or name this file with NEURON_CONFIG_FILE)."
      )
    ]
  },
  {
    heading: "The Axon registry",
    settings: [
      s(
        "AXON_REGISTRY_URL",
        "",
        "Comma-separated registry URLs; the Neuron fails over from one to the next.",
        "Unset: an Axon registry is embedded in the same process (development)."
      ),
      s(
        "AXON_ENROLLMENT_TOKEN",
        "",
        "Sent when registering, for registries that require enrollment; with the embedded registry it also turns",
        "enrollment on there. A secret."
      ),
      s("NEURON_HEARTBEAT_INTERVAL_MS", "60000", "The steady heartbeat interval."),
      s(
        "NEURON_BACKOFF_BASE_MS",
        "5000",
        "Backoff after a failed heartbeat: exponential from this base, full jitter, capped below."
      ),
      s("NEURON_BACKOFF_CEILING_MS", "240000", "The backoff's cap (under the 5 minutes after which routing stops)."),
      s("NEURON_AXON_TIMEOUT_MS", "10000", "One registry call's time limit.")
    ]
  },
  {
    heading: "The consent handshake",
    settings: [
      s("NEURON_AUTH_TIMEOUT_MS", "10000", "Time for a CareAgent to authenticate (and to answer the challenge)."),
      s("NEURON_MAX_CONCURRENT_HANDSHAKES", "1000", "Handshakes served at once; further upgrades wait in a queue."),
      s("NEURON_QUEUE_TIMEOUT_MS", "30000", "How long an upgrade may wait in that queue before a 503."),
      s("NEURON_MAX_PAYLOAD_BYTES", "65536", "Largest accepted WebSocket frame (larger closes with 1009)."),
      s(
        "NEURON_ALLOWED_ORIGINS",
        "",
        "Comma-separated Origin allowlist for browser clients (unset: any). Agents without Origin are allowed."
      )
    ]
  },
  {
    heading: "Administration",
    settings: [
      s(
        "NEURON_ADMIN_TOKEN",
        "",
        "Bearer token of the admin API (and of the `neuron` command, which reads this file too). Unset: the",
        "admin routes answer loopback callers only. A secret: keep this file readable by the Neuron's user only."
      ),
      s("NEURON_API_RATE_LIMIT", "600", "Requests per minute per API key (the burst is the same).")
    ]
  },
  {
    heading: "Local network presence",
    settings: [
      s("NEURON_MDNS", "false", "Advertise the Neuron on the local network (DNS-SD _careagent-neuron._tcp).")
    ]
  },
  {
    heading: "The embedded Axon registry (and `neuron axon`, which reads these from its environment)",
    settings: [
      s("AXON_HOST", "127.0.0.1", "Interface the registry listens on."),
      s("AXON_PORT", "8600", "Port the registry listens on."),
      s("AXON_DATA_DIR", "<NEURON_DATA_DIR>/axon", "The registry's SQLite file and alert files."),
      s(
        "AXON_DATABASE_URL",
        "",
        "`neuron axon` only: postgres://user:password@host:port/database keeps the registry in PostgreSQL",
        "(several instances may share it). Unset: SQLite in AXON_DATA_DIR. The password is a secret."
      )
    ]
  }
]

/** Every key the template lists. */
export const TEMPLATE_KEYS: ReadonlyArray<string> = SECTIONS.flatMap((section) => section.settings.map((x) => x.key))

const comment = (line: string) => (line === "" ? "#" : `# ${line}`)

/** The file's text; `values` are written as active settings (the generated admin token), the rest commented out. */
export const render = (values: Readonly<Record<string, string>> = {}): string => {
  const out: Array<string> = [
    "# Neuron configuration, written by `neuron init`.",
    "#",
    "# One setting per line, KEY=value; lines starting with # are comments. A value may be quoted (\"...\" or '...');",
    "# a # inside a value is part of it. The environment wins over this file, key by key. Every setting below is",
    "# commented out at its default: remove the # and change the value to set one. The Neuron reads this file at",
    "# start from its data folder (or wherever NEURON_CONFIG_FILE points), and so does the `neuron` command.",
    "# NEURON_LOG_FORMAT (json, logfmt or pretty) is read from the environment only."
  ]
  for (const section of SECTIONS) {
    out.push("", `# --- ${section.heading} ---`)
    for (const setting of section.settings) {
      out.push("")
      out.push(...setting.about.map(comment))
      // A default that is a value is written as the commented-out line itself; one that is derived or absent is
      // said in words, so that uncommenting a line never writes a placeholder.
      const literal = setting.fallback !== "" && !setting.fallback.includes("<")
      if (!literal) out.push(comment(`default: ${setting.fallback === "" ? "unset" : setting.fallback}`))
      const value = values[setting.key]
      out.push(value === undefined ? `# ${setting.key}=${literal ? setting.fallback : ""}` : `${setting.key}=${value}`)
    }
  }
  return out.join("\n") + "\n"
}

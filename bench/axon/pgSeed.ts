/**
 * Seeds a PostgreSQL registry database (migrated by the registry's own migrations) with `neurons` registrations in
 * one set-based statement, and a provider for every tenth: the population the sweep and the plans are measured on.
 * Every 100th neuron last beat 2.5 intervals ago (due `down`), every 250th 3.5 intervals ago (due deregistration);
 * the others 10 s ago.
 */
import { withCheckDigit } from "../../src/domain/Npi.js"
import { Pg } from "./modules.js"

/** The organization NPI of seeded neuron `i`. */
export const seededNpi = (i: number) => withCheckDigit("1" + String(i).padStart(8, "0"))

/** The NPI of the provider listed by seeded neuron `i` (every tenth neuron lists one). */
export const seededProviderNpi = (i: number) => withCheckDigit("2" + String(i).padStart(8, "0"))

const range = (from: number, to: number, step: number) =>
  Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, k) => from + k * step)

/** Seeds and analyzes; resolves with how many neurons are due a transition. */
export const seedPg = async (url: string, neurons: number, nowMs: number): Promise<{ due: number }> => {
  const client = new Pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(
      `INSERT INTO neurons (registration_id, organization_npi, organization_name, organization_type,
        neuron_endpoint_url, heartbeat_interval_s, token_hash, status, last_heartbeat_at, registered_at)
      SELECT md5('neuron' || i)::uuid::text, npi, 'Bench clinic ' || i, 'practice',
        'https://neuron-' || i || '.bench.example.org', 60, encode(sha256(('token' || i)::bytea), 'hex'), 'reachable',
        $2::bigint - CASE WHEN i % 250 = 0 THEN 210000 WHEN i % 100 = 0 THEN 150000 ELSE 10000 END, $2::bigint
      FROM unnest($1::text[]) WITH ORDINALITY AS t(npi, i)`,
      [range(1, neurons, 1).map(seededNpi), nowMs]
    )
    await client.query(
      `INSERT INTO providers (registration_id, provider_npi, provider_id, provider_name, registered_at)
      SELECT md5('neuron' || (10 * k))::uuid::text, npi, md5('provider' || k)::uuid::text, 'Dr Bench ' || k,
        $2::bigint
      FROM unnest($1::text[]) WITH ORDINALITY AS t(npi, k)`,
      [range(10, neurons, 10).map(seededProviderNpi), nowMs]
    )
    await client.query("VACUUM ANALYZE neurons")
    await client.query("VACUUM ANALYZE providers")
    const { rows } = await client.query(
      `SELECT count(*)::int AS due FROM neurons WHERE $1::bigint - last_heartbeat_at > 120000`,
      [nowMs]
    )
    return { due: rows[0].due }
  } finally {
    await client.end()
  }
}

/** Runs `statements` in order on the database at `url`. */
export const runStatements = async (url: string, statements: ReadonlyArray<string>): Promise<void> => {
  if (statements.length === 0) return
  const client = new Pg.Client({ connectionString: url })
  await client.connect()
  try {
    for (const statement of statements) await client.query(statement)
  } finally {
    await client.end()
  }
}

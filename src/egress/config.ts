import { join } from 'node:path';
import { z } from 'zod';
import { readFileCapped, readFileIfExists } from '../store/files.js';
import { parseConfigFile } from '../store/config-file.js';

/**
 * Egress proxy limits in `<policyDir>/proxy.json` (or `cordon proxy --config FILE`). Absent file:
 * the safe defaults below. Invalid file: an error naming the field, never a fallback.
 */
export type ProxyConfigErrorCode = 'CONFIG_INVALID';

const ms = (min: number, max: number, def: number, what: string): z.ZodDefault<z.ZodNumber> =>
  z.number().int().min(min).max(max).default(def).describe(what);

/** Methods forwarded for absolute-form requests. TRACE is left out: it echoes credentials back. */
export const DEFAULT_METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'OPTIONS',
] as const;

export const ProxyLimitsSchema = z.strictObject({
  maxHeaderBytes: z
    .number()
    .int()
    .min(1024)
    .max(1024 * 1024)
    .default(32 * 1024)
    .describe('Largest request head (request line and headers); larger gets 431.'),
  headersTimeoutMs: ms(1000, 300_000, 15_000, 'Time a client has to send a whole request head.'),
  idleTimeoutMs: ms(1000, 3_600_000, 120_000, 'An HTTP connection idle this long is closed.'),
  keepAliveTimeoutMs: ms(
    100,
    600_000,
    30_000,
    'A kept-alive client connection with no request this long is closed.',
  ),
  tunnelIdleTimeoutMs: ms(
    1000,
    86_400_000,
    3_600_000,
    'A tunnel (CONNECT, WebSocket) with no traffic either way this long is closed.',
  ),
  clientHelloTimeoutMs: ms(
    100,
    60_000,
    10_000,
    'Time a client has to send its TLS ClientHello after CONNECT.',
  ),
  connectTimeoutMs: ms(100, 120_000, 15_000, 'Time to open the upstream TCP connection.'),
  resolveTimeoutMs: ms(100, 60_000, 10_000, 'Time to resolve a host name.'),
  maxConnections: z
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .default(10_000)
    .describe('Client connections at once; more are refused.'),
  reportIntervalMs: ms(
    1000,
    86_400_000,
    60_000,
    'A long-lived connection or exchange reports its traffic this often.',
  ),
  drainTimeoutMs: ms(0, 600_000, 10_000, 'On shutdown, time given to open exchanges to finish.'),
  methods: z
    .array(z.string().regex(/^[A-Z]{1,20}$/, 'an upper-case HTTP method name'))
    .min(1)
    .default([...DEFAULT_METHODS])
    .describe('Methods forwarded for plain-HTTP requests (CONNECT is always handled).'),
});

export type ProxyLimits = z.infer<typeof ProxyLimitsSchema>;

const ProxyConfigSchema = z.strictObject({
  apiVersion: z.literal('cordon.dev/v1'),
  kind: z.literal('ProxyConfig'),
  limits: ProxyLimitsSchema.default(ProxyLimitsSchema.parse({})),
});

export type ProxyConfig = z.infer<typeof ProxyConfigSchema>;

/** The defaults, for callers that set no limits. */
export function defaultLimits(over: Partial<ProxyLimits> = {}): ProxyLimits {
  return { ...ProxyLimitsSchema.parse({}), ...over };
}

export function proxyConfigFile(policyDir: string): string {
  return join(policyDir, 'proxy.json');
}

export function parseProxyConfig(raw: string | Uint8Array, file: string): ProxyConfig {
  return parseConfigFile(ProxyConfigSchema, raw, file, {
    code: 'CONFIG_INVALID',
    hint: 'see "Egress proxy" in the README for the fields of proxy.json',
    maxBytes: 256 * 1024,
  });
}

/** `file` when given (it must exist), else `<policyDir>/proxy.json` when present, else defaults. */
export function readProxyConfig(policyDir: string, file?: string): ProxyConfig {
  const path = file ?? proxyConfigFile(policyDir);
  const raw =
    file === undefined ? readFileIfExists(path, 256 * 1024) : readFileCapped(path, 256 * 1024);
  return parseProxyConfig(raw ?? '{"apiVersion":"cordon.dev/v1","kind":"ProxyConfig"}', path);
}

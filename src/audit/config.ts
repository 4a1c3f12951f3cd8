import { join } from 'node:path';
import { z } from 'zod';
import { isLoopbackHost } from '../manifest/ip.js';
import { readFileIfExists } from '../store/files.js';
import { parseConfigFile } from '../store/config-file.js';

/**
 * Audit settings in `<policyDir>/audit.json`: checkpoint and rotation cadence, and the sinks that
 * ship the log off the machine. Absent file: defaults and no sinks. Invalid file: an error naming
 * the field, never a fallback.
 */
export type ConfigErrorCode = 'CONFIG_INVALID';

const Name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and "-", at most 63')
  .describe('Sink name; its delivery cursor is stored under this name.');

const Url = z.url({ protocol: /^https?$/ }).describe('Receiver URL.');

const Tls = {
  caFile: z
    .string()
    .min(1)
    .optional()
    .describe('PEM CA bundle to trust instead of the system CAs.'),
  certFile: z.string().min(1).optional().describe('PEM client certificate (mutual TLS).'),
  keyFile: z.string().min(1).optional().describe('PEM client key (mutual TLS).'),
};

const Common = {
  name: Name,
  batchSize: z.number().int().min(1).max(10_000).default(500).describe('Records per request.'),
  timeoutMs: z.number().int().min(100).max(300_000).default(10_000).describe('Per request.'),
};

const HecSchema = z.strictObject({
  type: z.literal('splunk-hec'),
  ...Common,
  url: Url.describe('HEC base URL, e.g. https://splunk.example.com:8088'),
  token: z.string().min(1).optional().describe('HEC token (or tokenFile).'),
  tokenFile: z.string().min(1).optional().describe('File holding the HEC token.'),
  index: z.string().min(1).optional(),
  sourcetype: z.string().min(1).default('ocsf:cordon'),
  ...Tls,
});

const OtlpSchema = z.strictObject({
  type: z.literal('otlp-http'),
  ...Common,
  url: Url.describe('OTLP/HTTP logs endpoint, e.g. https://collector:4318/v1/logs'),
  headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/), z.string()).default({}),
  ...Tls,
});

const SyslogSchema = z.strictObject({
  type: z.literal('syslog-tls'),
  ...Common,
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(6514),
  serverName: z.string().min(1).optional().describe('Name to check in the server certificate.'),
  resendWindowSeconds: z
    .number()
    .int()
    .min(0)
    .max(3600)
    .default(30)
    .describe('After a connection failure, send again what went out this long before it.'),
  appName: z
    .string()
    .regex(/^[\x21-\x7e]{1,48}$/)
    .default('cordon'),
  ...Tls,
});

const SinkSchema = z.discriminatedUnion('type', [HecSchema, OtlpSchema, SyslogSchema]);
export type SinkConfig = z.infer<typeof SinkSchema>;

const AuditConfigSchema = z
  .strictObject({
    apiVersion: z.literal('cordon.dev/v1'),
    kind: z.literal('AuditConfig'),
    checkpoint: z
      .strictObject({
        everyRecords: z.number().int().min(1).max(1_000_000).default(1000),
        everySeconds: z.number().int().min(1).max(86_400).default(60),
      })
      .default({ everyRecords: 1000, everySeconds: 60 }),
    segment: z
      .strictObject({
        maxBytes: z
          .number()
          .int()
          .min(4096)
          .max(2 ** 40)
          .default(64 * 1024 * 1024),
        maxAgeSeconds: z
          .number()
          .int()
          .min(60)
          .max(366 * 86_400)
          .default(86_400),
      })
      .default({ maxBytes: 64 * 1024 * 1024, maxAgeSeconds: 86_400 }),
    retry: z
      .strictObject({
        initialMs: z.number().int().min(10).max(60_000).default(500),
        maxMs: z.number().int().min(100).max(3_600_000).default(60_000),
      })
      .default({ initialMs: 500, maxMs: 60_000 }),
    sinks: z.array(SinkSchema).default([]),
    witness: z
      .strictObject({
        path: z
          .string()
          .regex(/^\//, 'an absolute path')
          .describe(
            'File the writer appends every signed checkpoint to, and that `cordon audit verify` checks the log against. It proves the log was not cut back only where the writer cannot rewrite it: append-only (`chattr +a`) or owned by another user.',
          ),
      })
      .optional()
      .describe(
        'Checkpoint witness kept outside the writer\'s reach (see "Checkpoints" in the README).',
      ),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.sinks.forEach((s, i) => {
      if (seen.has(s.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['sinks', i, 'name'],
          message: `sink name ${s.name} is used twice`,
        });
      }
      seen.add(s.name);
      if (s.type === 'splunk-hec' && (s.token === undefined) === (s.tokenFile === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: ['sinks', i, 'token'],
          message: 'give exactly one of token and tokenFile',
        });
      }
      if ((s.certFile === undefined) !== (s.keyFile === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: ['sinks', i, 'certFile'],
          message: 'certFile and keyFile go together',
        });
      }
      if (s.type !== 'syslog-tls') {
        const u = new URL(s.url);
        // Audit records name files, hosts and people: cleartext only to this machine.
        if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
          ctx.addIssue({
            code: 'custom',
            path: ['sinks', i, 'url'],
            message: 'use https:// (plain http is accepted only to a loopback address)',
          });
        }
      }
    });
  });

export type AuditConfig = z.infer<typeof AuditConfigSchema>;

export function auditConfigFile(policyDir: string): string {
  return join(policyDir, 'audit.json');
}

/** Parse and check audit settings; `file` names the source in errors. */
export function parseAuditConfig(raw: string | Uint8Array, file: string): AuditConfig {
  return parseConfigFile(AuditConfigSchema, raw, file, {
    code: 'CONFIG_INVALID',
    hint: 'see "Audit sinks" in the README for the fields of audit.json',
    maxBytes: 1024 * 1024,
  });
}

export function readAuditConfig(policyDir: string): AuditConfig {
  const file = auditConfigFile(policyDir);
  const raw = readFileIfExists(file, 1024 * 1024);
  return parseAuditConfig(raw ?? '{"apiVersion":"cordon.dev/v1","kind":"AuditConfig"}', file);
}

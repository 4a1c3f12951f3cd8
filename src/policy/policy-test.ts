import { z } from 'zod';
import type { Pdp } from './pdp.js';
import type { Decision, PolicyRequest } from './types.js';

/**
 * Table-driven policy tests (request → expected effect, and optionally rule and code), in the
 * spirit of `opa test`. A case names its request in full (`request`) or by shorthand:
 * `read`, `write`, `exec`, `url` (GET), `connect` (host:port), `api`, `secret`.
 */
export const PolicyTestCaseSchema = z
  .strictObject({
    name: z.string().optional(),
    request: z.record(z.string(), z.unknown()).optional(),
    read: z.string().optional(),
    write: z.string().optional(),
    exec: z.string().optional(),
    url: z.string().optional(),
    connect: z.string().optional(),
    api: z.string().optional(),
    secret: z.string().optional(),
    expect: z.enum(['allow', 'deny', 'ask']),
    rule: z.string().optional(),
    code: z.string().optional(),
  })
  .refine(
    (c) =>
      ['request', 'read', 'write', 'exec', 'url', 'connect', 'api', 'secret'].filter(
        (k) => (c as Record<string, unknown>)[k] !== undefined,
      ).length === 1,
    {
      message:
        'each case needs exactly one of request, read, write, exec, url, connect, api, secret',
    },
  );

export const PolicyTestFileSchema = z.strictObject({
  description: z.string().optional(),
  /** A manifest file (relative to the test file) or a built-in template with parameters. */
  manifest: z.string().optional(),
  template: z.string().optional(),
  params: z.record(z.string(), z.unknown()).optional(),
  home: z.string().default('/home/user'),
  /** Guardrails directory (relative to the test file); default none. */
  guardrails: z.string().optional(),
  risk: z.enum(['low', 'medium', 'high']).optional(),
  dataClassification: z.enum(['public', 'internal', 'confidential', 'restricted']).optional(),
  cases: z.array(PolicyTestCaseSchema).min(1),
});

export type PolicyTestCase = z.output<typeof PolicyTestCaseSchema>;
export type PolicyTestFile = z.output<typeof PolicyTestFileSchema>;

export function caseRequest(c: PolicyTestCase): PolicyRequest {
  if (c.request !== undefined) return c.request as unknown as PolicyRequest;
  if (c.read !== undefined) return { kind: 'file.read', path: c.read };
  if (c.write !== undefined) return { kind: 'file.write', path: c.write };
  if (c.exec !== undefined) return { kind: 'exec', path: c.exec };
  if (c.url !== undefined) return { kind: 'http.request', method: 'GET', url: c.url };
  if (c.connect !== undefined) {
    const i = c.connect.lastIndexOf(':');
    return {
      kind: 'net.connect',
      host: c.connect.slice(0, i),
      port: Number(c.connect.slice(i + 1)),
    };
  }
  if (c.api !== undefined) return { kind: 'api.call', scope: c.api };
  return { kind: 'secret.get', name: c.secret ?? '' };
}

export interface PolicyTestResult {
  readonly index: number;
  readonly name: string;
  readonly ok: boolean;
  readonly expected: { effect: string; rule?: string; code?: string };
  readonly decision: Decision;
}

/** Run every case; a case passes when effect (and rule, code when given) match. */
export function runPolicyTests(pdp: Pdp, cases: readonly PolicyTestCase[]): PolicyTestResult[] {
  return cases.map((c, index) => {
    const req = caseRequest(c);
    const decision = pdp.decide(req);
    const ok =
      decision.effect === c.expect &&
      (c.rule === undefined || decision.rule === c.rule) &&
      (c.code === undefined || decision.code === c.code);
    const name = c.name ?? `${req.kind} ${JSON.stringify(req).slice(0, 120)}`;
    return {
      index,
      name,
      ok,
      expected: {
        effect: c.expect,
        ...(c.rule === undefined ? {} : { rule: c.rule }),
        ...(c.code === undefined ? {} : { code: c.code }),
      },
      decision,
    };
  });
}

import { hostname } from 'node:os';
import { VERSION } from '../../version.js';
import type { AuditRecord } from '../record.js';
import { toExported } from '../record.js';

/** Splunk HEC: one JSON object per record, concatenated; `event` is the exported OCSF event. */
export function hecBody(
  records: readonly AuditRecord[],
  opts: { sourcetype: string; index?: string | undefined },
): string {
  const host = hostname();
  return records
    .map((r) =>
      JSON.stringify({
        time: (typeof r.event['time'] === 'number' ? r.event['time'] : Date.parse(r.time)) / 1000,
        host,
        source: 'cordon',
        sourcetype: opts.sourcetype,
        ...(opts.index === undefined ? {} : { index: opts.index }),
        event: toExported(r),
      }),
    )
    .join('\n');
}

/** OCSF severity_id → OpenTelemetry SeverityNumber. */
function otelSeverity(id: unknown): [number, string] {
  switch (id) {
    case 1:
      return [9, 'INFO'];
    case 2:
      return [10, 'INFO2'];
    case 3:
      return [13, 'WARN'];
    case 4:
      return [17, 'ERROR'];
    case 5:
    case 6:
      return [21, 'FATAL'];
    default:
      return [0, 'UNSPECIFIED'];
  }
}

/** OTLP/HTTP logs, JSON encoding (int64 as decimal strings, as the spec requires). */
export function otlpBody(records: readonly AuditRecord[]): string {
  const logRecords = records.map((r) => {
    const ms = typeof r.event['time'] === 'number' ? r.event['time'] : Date.parse(r.time);
    const [severityNumber, severityText] = otelSeverity(r.event['severity_id']);
    return {
      timeUnixNano: `${ms}000000`,
      observedTimeUnixNano: `${Date.parse(r.time)}000000`,
      severityNumber,
      severityText,
      body: { stringValue: JSON.stringify(toExported(r)) },
      attributes: [
        { key: 'cordon.audit.seq', value: { intValue: String(r.seq) } },
        { key: 'cordon.audit.hash', value: { stringValue: r.hash } },
        { key: 'ocsf.class_uid', value: { intValue: String(r.event['class_uid']) } },
      ],
    };
  });
  return JSON.stringify({
    resourceLogs: [
      {
        resource: {
          attributes: [
            { key: 'service.name', value: { stringValue: 'cordon' } },
            { key: 'service.version', value: { stringValue: VERSION } },
            { key: 'host.name', value: { stringValue: hostname() } },
          ],
        },
        scopeLogs: [{ scope: { name: 'cordon.audit', version: VERSION }, logRecords }],
      },
    ],
  });
}

/** OCSF severity_id → syslog severity (RFC 5424 table 2). */
function syslogSeverity(id: unknown): number {
  switch (id) {
    case 1:
      return 6;
    case 2:
      return 5;
    case 3:
      return 4;
    case 4:
      return 3;
    case 5:
      return 2;
    case 6:
      return 1;
    default:
      return 6;
  }
}

const FACILITY_LOG_AUDIT = 13;

/**
 * RFC 5424 messages in RFC 5425 octet-counted frames. The record's seq travels in the
 * IANA-registered `meta` SD element (`sequenceId`), the exported event as the UTF-8 message.
 */
export function syslogFrames(records: readonly AuditRecord[], appName: string): Buffer {
  const host =
    hostname()
      .replace(/[^\x21-\x7e]/g, '-')
      .slice(0, 255) || '-';
  const parts: Buffer[] = [];
  for (const r of records) {
    const pri = FACILITY_LOG_AUDIT * 8 + syslogSeverity(r.event['severity_id']);
    const msgId = `ocsf-${String(r.event['class_uid'])}`;
    const sequenceId = ((r.seq - 1) % 2147483647) + 1;
    const header = `<${pri}>1 ${r.time} ${host} ${appName} ${process.pid} ${msgId} [meta sequenceId="${sequenceId}"] `;
    const msg = Buffer.concat([
      Buffer.from(header, 'utf8'),
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from(JSON.stringify(toExported(r)), 'utf8'),
    ]);
    parts.push(Buffer.from(`${msg.length} `, 'ascii'), msg);
  }
  return Buffer.concat(parts);
}

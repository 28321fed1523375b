// Independent OPC UA client (node-opcua) used by the interop tests: connects to PLC-2, reads and writes,
// prints one JSON line. Usage: node node_ua.mjs URL [POLICY MODE USER PASSWORD]
import { OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds, DataType } from "node-opcua-client";

const [url, policy = "None", mode = "None", user, password] = process.argv.slice(2);
const client = OPCUAClient.create({
  applicationName: "aiotlab-interop",
  applicationUri: "urn:aiotlab:interop:node-opcua",
  securityMode: MessageSecurityMode[mode],
  securityPolicy: SecurityPolicy[policy],
  endpointMustExist: false,
  connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
  requestedSessionTimeout: 10000,
});
const out = { ok: false };
try {
  await client.connect(url);
  const session = await client.createSession(user ? { type: 1, userName: user, password } : undefined);
  const ns = (await session.readNamespaceArray()).indexOf("urn:aiotlab:plant");
  const id = (p) => `ns=${ns};s=${p}`;
  const temp = await session.read({ nodeId: id("Plant.Heater.Temperature"), attributeId: AttributeIds.Value });
  const good = await session.read({ nodeId: id("Plant.FillingLine.GoodCount"), attributeId: AttributeIds.Value });
  const sp = await session.read({ nodeId: id("Plant.Heater.Setpoint"), attributeId: AttributeIds.Value });
  const wrote = await session.write({ nodeId: id("Plant.Heater.Setpoint"), attributeId: AttributeIds.Value,
    value: { value: { dataType: DataType.Double, value: sp.value.value + 0.5 } } });
  const call = await session.call({ objectId: id("Plant.FillingLine"), methodId: id("Plant.FillingLine.ResetFault"), inputArguments: [] });
  Object.assign(out, {
    ok: true, namespace: ns, temperature: temp.value.value, temperature_ts: temp.sourceTimestamp,
    good_count: good.value.value, setpoint: sp.value.value, write_status: wrote.name,
    call_status: call.statusCode.name,
  });
  await session.close();
} catch (err) {
  out.error = String(err && err.message || err);
} finally {
  await client.disconnect().catch(() => {});
}
console.log(JSON.stringify(out));
process.exit(0);

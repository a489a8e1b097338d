// The one place that turns an air handler of the site file into a DeviceIo. node-opcua costs
// ~90 MB of RSS, so its adapter is imported only when the first OPC-UA unit is created; a
// Modbus-only site never loads it. Control code gets DeviceIo and never imports an adapter.
import type { AirHandler } from '../config/site-schema.ts';
import type { DeviceDeps, DeviceIo } from './device-io.ts';
import { ModbusDevice } from './modbus/modbus-device.ts';

type OpcuaModule = typeof import('./opcua/opcua-device.ts');
let opcua: Promise<OpcuaModule> | undefined;

export async function createDevice(ahu: AirHandler, deps: DeviceDeps = {}): Promise<DeviceIo> {
  if (ahu.protocol !== 'opcua') return new ModbusDevice(ahu, deps);
  opcua ??= import('./opcua/opcua-device.ts').then((m) => {
    // node-opcua writes its warnings as plain text on stdout; route them into our JSON logs once.
    if (deps.logger) m.routeNodeOpcuaLogs(deps.logger);
    return m;
  });
  const { OpcuaDevice } = await opcua;
  return new OpcuaDevice(ahu, deps);
}

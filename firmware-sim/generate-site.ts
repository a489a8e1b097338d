// Generates a valid site of any size: rows of racks in one hall, air handlers along both long
// walls, one or more sensor nodes per rack, gateways and control groups by zone. Used for the
// demo site and for scale benchmarks (1 000 AHUs, 10 000 nodes). Deterministic for a given seed.
// It lives with the simulator: it invents halls, the controller only ever loads one.
import type { AirHandler, ControlGroup, Rack, SensorNode, Site } from '../src/config/site-schema.ts';
import { mulberry32 } from './random.ts';

export interface SiteShape {
  id: string;
  name: string;
  airHandlers: number;
  /** Share of air handlers on OPC-UA (the rest are Modbus TCP), rounded; at least 0. */
  opcuaShare: number;
  racksPerAirHandler: number;
  sensorNodes: number;
  gateways: number;
  controlGroups: number;
  host: string;
  /** First Modbus TCP port; AHU i listens on basePort + i. 0 gives every AHU port 0 (sim picks). */
  modbusBasePort: number;
  opcuaPort: number;
  itLoadKwPerRack: number;
  seed: number;
}

export const demoShape: SiteShape = {
  id: 'demo-hall',
  name: 'Demo data hall A',
  airHandlers: 8,
  opcuaShare: 0.25,
  racksPerAirHandler: 6,
  sensorNodes: 48,
  gateways: 2,
  controlGroups: 4,
  host: '127.0.0.1',
  modbusBasePort: 15020,
  opcuaPort: 48400,
  itLoadKwPerRack: 8,
  seed: 1,
};

const RACK_PITCH_M = 0.6;
const ROW_PITCH_M = 3.6; // rack depth + hot aisle + cold aisle
// Small halls have rows of 12 racks; large generated halls get longer rows so they stay roughly square.
const racksPerRow = (rackCount: number): number =>
  rackCount <= 200 ? 12 : Math.ceil(Math.sqrt(rackCount * 6));

export function generateSite(shape: SiteShape): Site {
  const rnd = mulberry32(shape.seed);
  const rackCount = shape.airHandlers * shape.racksPerAirHandler;
  const rowLength = racksPerRow(rackCount);
  const rows = Math.max(1, Math.ceil(rackCount / rowLength));
  const perRow = Math.min(rowLength, rackCount);
  const wallClearM = 3; // AHUs stand along the walls, 3 m from the first/last row
  const widthM = round(perRow * RACK_PITCH_M + 2 * wallClearM, 1);
  const depthM = round(rows * ROW_PITCH_M + 2 * wallClearM, 1);
  const room = 'hall-a';

  const racks: Rack[] = [];
  for (let i = 0; i < rackCount; i++) {
    const row = Math.floor(i / rowLength);
    const col = i % rowLength;
    racks.push({
      id: `R${String.fromCharCode(65 + (row % 26))}${row >= 26 ? Math.floor(row / 26) : ''}-${pad(col + 1, 2)}`,
      room,
      row: `row-${row + 1}`,
      xM: round(wallClearM + (col + 0.5) * RACK_PITCH_M, 2),
      yM: round(wallClearM + (row + 0.5) * ROW_PITCH_M, 2),
      // ±25 % around the nominal load so racks differ, like a real hall
      itLoadKw: round(shape.itLoadKwPerRack * (0.75 + 0.5 * rnd()), 1),
    });
  }

  const opcuaCount = Math.round(shape.airHandlers * shape.opcuaShare);
  const airHandlers: AirHandler[] = [];
  const perWall = Math.ceil(shape.airHandlers / 2);
  const capacityKw = round((shape.racksPerAirHandler * shape.itLoadKwPerRack * 1.5) / 1, 0);
  for (let i = 0; i < shape.airHandlers; i++) {
    const wall = i < perWall ? 0 : 1;
    const k = wall === 0 ? i : i - perWall;
    const along = ((k + 0.5) / perWall) * depthM;
    const common = {
      id: `AHU-${pad(i + 1, shape.airHandlers >= 1000 ? 4 : 2)}`,
      room,
      xM: wall === 0 ? 0.5 : round(widthM - 0.5, 2),
      yM: round(along, 2),
      capacityKw,
      maxAirflowM3s: round(capacityKw / 12, 2), // ~12 kW per m³/s at a 10 K air ΔT
      fanMaxKw: round(capacityKw / 15, 2),
      localSetpointC: 18,
      localFanPct: 100,
      watchdogS: 30,
      supplyTauS: 60,
    };
    // OPC-UA units are spread out, not bunched on one wall: every k-th unit.
    const isOpcua =
      opcuaCount > 0 &&
      i % Math.max(1, Math.floor(shape.airHandlers / opcuaCount)) === 1 &&
      countOpcua(airHandlers) < opcuaCount;
    if (isOpcua) {
      airHandlers.push({
        ...common,
        protocol: 'opcua',
        // Said explicitly: generated sites serve tests and benches against a simulator nobody
        // has trusted yet; real sites leave it out and get SignAndEncrypt (docs/security.md).
        endpoint: { url: `opc.tcp://${shape.host}:${shape.opcuaPort}/coolctl-sim`, securityMode: 'None' },
      });
    } else {
      airHandlers.push({
        ...common,
        protocol: 'modbus-tcp',
        endpoint: {
          host: shape.host,
          port: shape.modbusBasePort === 0 ? 0 : shape.modbusBasePort + i,
          unitId: 1,
        },
      });
    }
  }

  const gateways = Array.from({ length: shape.gateways }, (_, i) => ({
    id: `gw-${i + 1}`,
    topicPrefix: 'coolctl/sim',
  }));
  const sensorNodes: SensorNode[] = [];
  for (let i = 0; i < shape.sensorNodes; i++) {
    const rack = racks[i % racks.length]!;
    // Nodes on the half of the hall nearer gateway k report through it; hops grow with distance.
    const gwIndex = Math.min(shape.gateways - 1, Math.floor((rack.yM / depthM) * shape.gateways));
    sensorNodes.push({
      id: `N${pad(i + 1, shape.sensorNodes >= 10_000 ? 5 : 4)}`,
      rack: rack.id,
      gateway: gateways[gwIndex]!.id,
      hops: 1 + Math.floor(rnd() * 4),
      reportIntervalS: 10,
      sensors: [
        { id: 'inlet-top', kind: 'inlet-top' },
        { id: 'inlet-middle', kind: 'inlet-middle' },
        { id: 'inlet-bottom', kind: 'inlet-bottom' },
        { id: 'rh', kind: 'humidity' },
        ...(i % 4 === 0 ? [{ id: 'subfloor', kind: 'subfloor-pressure' as const }] : []),
      ],
    });
  }

  // Control groups by zone along the hall: AHUs sorted by position, split into equal runs; a
  // group's sensor nodes are those whose rack is nearest to one of its AHUs.
  const groupsCount = Math.max(1, Math.min(shape.controlGroups, shape.airHandlers));
  const byZone = [...airHandlers].sort((a, b) => a.yM - b.yM || a.xM - b.xM);
  const controlGroups: ControlGroup[] = Array.from({ length: groupsCount }, (_, g) => ({
    id: `zone-${g + 1}`,
    airHandlers: [],
    sensorNodes: [],
  }));
  byZone.forEach((a, i) => {
    controlGroups[Math.floor((i * groupsCount) / byZone.length)]!.airHandlers.push(a.id);
  });
  const groupOfAhu = new Map<string, ControlGroup>();
  for (const g of controlGroups) for (const a of g.airHandlers) groupOfAhu.set(a, g);
  const rackById = new Map(racks.map((r) => [r.id, r]));
  for (const n of sensorNodes) {
    const rack = rackById.get(n.rack)!;
    let best = airHandlers[0]!;
    let bestD = Number.POSITIVE_INFINITY;
    for (const a of airHandlers) {
      const d = (a.xM - rack.xM) ** 2 + (a.yM - rack.yM) ** 2;
      if (d < bestD) {
        bestD = d;
        best = a;
      }
    }
    groupOfAhu.get(best.id)!.sensorNodes.push(n.id);
  }

  return {
    site: { id: shape.id, name: shape.name, supplyAirDewPointC: 8, subfloorPressurePaPerM3s: 12 },
    rooms: [{ id: room, name: 'Hall A', widthM, depthM, heightM: 3.5 }],
    racks,
    airHandlers,
    gateways,
    sensorNodes,
    controlGroups,
    mesh: { perHopLossPct: 2, perHopLatencyMs: 20, maxRetries: 3, batteryDrainPctPerReport: 0.0005 },
  };
}

function countOpcua(list: AirHandler[]): number {
  return list.filter((a) => a.protocol === 'opcua').length;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

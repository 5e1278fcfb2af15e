"""The baseline for bench/dns_qps.py: a trivial dnspython UDP server answering one constant A record.

Parse, make the response, add the record, serialize — the least a dnspython-based server can
do per query, on the same asyncio UDP transport the bridge uses.
"""

from __future__ import annotations

import asyncio
import sys

import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class Constant(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 5, "IN", "A", "10.0.0.1"))
        self.transport.sendto(response.to_wire(), addr)  # type: ignore[attr-defined]


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Constant, local_addr=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

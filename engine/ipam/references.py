"""Checks the topology services need from IPAM, for the lead to wire in at merge:

- `zone_ipam_children`: what still holds a zone (for topology.delete_zone's
  `_refuse_children`), so deleting a zone with ranges or networks is refused by name
  instead of failing on a foreign key;
- `check_pod_management_range`: a pod's new or changed management range must not overlap
  a public range, a shared guest range or an isolated network of its zone (create_pod and
  update_pod check pods against pods only).
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from engine.ipam.addressing import check_no_overlap, ip_int, zone_spans
from engine.models import GuestNetwork, PublicIpRange, Zone, ZoneVniRange


def zone_ipam_children(session: Session, zone_id: int) -> list[tuple[str, tuple[int, list[str]]]]:
    """(kind, (count, first names)) for every kind of IPAM object in the zone."""
    ranges = list(
        session.exec(
            select(PublicIpRange.start_ip, PublicIpRange.end_ip)
            .where(PublicIpRange.zone_id == zone_id)
            .order_by(PublicIpRange.start_int)
            .limit(5)
        )
    )
    range_count = session.exec(select(func.count()).where(PublicIpRange.zone_id == zone_id)).one()
    network_names = list(
        session.exec(
            select(GuestNetwork.name)
            .where(GuestNetwork.zone_id == zone_id)
            .order_by(GuestNetwork.name)
            .limit(5)
        )
    )
    network_count = session.exec(select(func.count()).where(GuestNetwork.zone_id == zone_id)).one()
    vni_ranges = list(
        session.exec(
            select(ZoneVniRange.first_vni, ZoneVniRange.last_vni)
            .where(ZoneVniRange.zone_id == zone_id)
            .order_by(ZoneVniRange.first_vni)
            .limit(5)
        )
    )
    vni_count = session.exec(select(func.count()).where(ZoneVniRange.zone_id == zone_id)).one()
    return [
        ("public IP range", (range_count, [f"{a}-{b}" for a, b in ranges])),
        ("guest network", (network_count, network_names)),
        ("VLAN/VNI range", (vni_count, [f"{a}-{b}" for a, b in vni_ranges])),
    ]


def check_pod_management_range(
    session: Session,
    label: str,
    zone: Zone,
    start_ip: str,
    end_ip: str,
    gateway: str,
) -> None:
    """Refuse a pod management range that overlaps an IPAM range of the zone (pods against
    pods stay topology's check)."""
    spans = [s for s in zone_spans(session, zone.id) if s.pod_id is None]  # type: ignore[arg-type]
    check_no_overlap(
        label,
        spans,
        ip_int(start_ip),
        ip_int(end_ip),
        what="management range",
        zone_name=zone.name,
        gateway=gateway,
    )

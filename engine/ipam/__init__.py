"""IP address management and the network model.

public.py           public IP ranges of a zone; associate / release / reserve addresses
networks.py         guest networks (Basic zone shared, Advanced shared and isolated),
                    guest ranges, NICs
management.py       pod management addresses for hosts and system services
vni.py              VLAN / VXLAN id pools of a zone
security_groups.py  security groups, rules and VM membership (the model)
utilisation.py      utilisation per range, network, pod and zone
allocation.py       the one-statement allocation primitive they all use
addressing.py       address arithmetic and the shared range rules
errors.py           AddressExhausted
"""

"""An ML2 mechanism driver that plays the part of the absent L2 agents.

The dev cloud runs Neutron without agents, so no driver would ever bind a port and
Nova could not boot on one. This driver binds every port on every host, on the first
segment offered (flat, VLAN or VXLAN), as an OVS port that is ACTIVE at once. It moves
no packets: nothing in the dev cloud forwards traffic.

neutron's shipped `test` driver does this only for some host names and breaks on VLAN
segments (it treats them as a hierarchical-binding test case), hence this one.
"""
from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api


class FakeAgentMechanismDriver(api.MechanismDriver):
    """Binds every port, ACTIVE, as if an OVS agent ran on its host."""

    def initialize(self):
        pass

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                {portbindings.CAP_PORT_FILTER: True,
                                 portbindings.OVS_HYBRID_PLUG: False},
                                status=constants.PORT_STATUS_ACTIVE)
            return

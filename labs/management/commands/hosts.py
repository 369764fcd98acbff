"""`manage.py hosts <subcommand>`: the worker hosts as the web sees them; drain one.

    manage.py hosts list             # each live host: capacity, sandboxes, warm pool, drained
    manage.py hosts drain NAME       # NAME takes no new sandboxes; its sessions run to their end
    manage.py hosts undrain NAME     # NAME takes new sandboxes again

Draining changes nothing on the host itself (no restart, no signal): the web stops
placing starts there and the host's warm pool empties. See docs/operations.md.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand

from labs.selectors import hosts_alive, hosts_draining
from labs.services import host_drain


class Command(BaseCommand):
    help = "List worker hosts; drain one (no new sandboxes) or undrain it."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        sub.add_parser("list", help="Live hosts: capacity, sandboxes, warm pool, drained.")
        for name, text in (("drain", "Take no new sandboxes on this host; its sessions run to their end."),
                           ("undrain", "Let this host take new sandboxes again.")):
            sub.add_parser(name, help=text).add_argument("host")

    def handle(self, *args, subcommand: str, host: str = "", **options) -> None:
        if subcommand == "list":
            drained = hosts_draining()
            for beat in hosts_alive():
                self.stdout.write(f"{beat['host']}: capacity {beat['capacity']}, {beat['live']} sandboxes "
                                  f"({beat.get('pooled', 0)} in the warm pool)"
                                  f"{', drained' if beat['host'] in drained else ''}")
            return
        host_drain(host=host, drained=subcommand == "drain")
        self.stdout.write(f"{host}: {'drained (no new sandboxes)' if subcommand == 'drain' else 'takes new sandboxes'}")

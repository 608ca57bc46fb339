# Mailman 3 lists for remora's tests, run by svc-mailman.sh inside Mailman:
#   mailman -C CFG --run-as-root shell -r mailman_lists.setup DOMAIN SPEC...
# SPEC is NAME=member,member[:setting]. Every list keeps Mailman's default
# settings except the one named after the colon:
#   header  a list header (list:member:regular:header) and a non-ASCII footer
#   dmarc   DMARC mitigation munge_from, applied to every post
#   reject  posts from members are rejected (default_member_action = reject)
# Members are subscribed without confirmation or welcome mail. Settings
# changed here are only kept because setup commits the transaction itself.
import os

from zope.component import getUtility

from mailman.app.lifecycle import create_list
from mailman.config import config
from mailman.interfaces.action import Action
from mailman.interfaces.domain import IDomainManager
from mailman.interfaces.listmanager import IListManager
from mailman.interfaces.mailinglist import DMARCMitigateAction
from mailman.interfaces.member import MemberRole
from mailman.interfaces.usermanager import IUserManager
from mailman.utilities.datetime import now

HEADER = "Posts to this list are archived. Be kind to each other."
FOOTER = "-- \nGrüße vom Listenserver ✓ (a footer that is not ASCII)\n"


def template(mlist, name, text):
    # Mailman looks for a list's templates in
    # $template_dir/lists/LIST_ID/LANG/NAME.txt before its defaults.
    d = os.path.join(config.TEMPLATE_DIR, "lists", mlist.list_id, "en")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name + ".txt"), "w", encoding="utf-8") as f:
        f.write(text)


def setup(domain, *specs):
    lists = getUtility(IListManager)
    users = getUtility(IUserManager)
    domains = getUtility(IDomainManager)
    if domains.get(domain) is None:
        domains.add(domain)
    for spec in specs:
        name, _, rest = spec.partition("=")
        members, _, setting = rest.partition(":")
        fqdn = name + "@" + domain
        mlist = lists.get(fqdn) or create_list(fqdn, owners=["postmaster@example.test"])
        for m in members.split(","):
            if m and mlist.members.get_member(m) is None:
                addr = users.get_address(m) or users.create_address(m, m.split("@")[0])
                addr.verified_on = now()
                # no welcome mail: it would land in the test mailboxes
                mlist.subscribe(addr, MemberRole.member, send_welcome_message=False)
        if setting == "header":
            template(mlist, "list:member:regular:header", HEADER)
            template(mlist, "list:member:regular:footer", FOOTER)
        elif setting == "dmarc":
            mlist.dmarc_mitigate_action = DMARCMitigateAction.munge_from
            mlist.dmarc_mitigate_unconditionally = True
        elif setting == "reject":
            mlist.default_member_action = Action.reject
        elif setting:
            raise SystemExit("mailman_lists: unknown setting " + setting)
        print("mailman_lists:", fqdn, members, setting or "defaults")
    config.db.commit()

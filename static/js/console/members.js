// Users and roles (templates/console/members.html): change a member's role, deactivate or
// reactivate a member, create an invitation (its link is shown once) and revoke one. Every
// write is the members and invitations API's (labelling/api/members.py).

import { config, deleteJson, patchJson, postJson, showAlert } from "./http.js";

const settings = config();
const status = document.getElementById("status");

function say(message) {
  status.textContent = message;
  status.hidden = false;
}

function memberUrl(pk) {
  return `${settings.urls.members}${pk}/`;
}

for (const select of document.querySelectorAll("select.member-role")) {
  select.addEventListener("change", async () => {
    const row = select.closest("tr");
    select.disabled = true;
    try {
      const member = await patchJson(memberUrl(select.dataset.member), { role: select.value });
      select.dataset.current = member.role;
      say(`${member.username} is now ${select.selectedOptions[0].textContent}.`);
    } catch (error) {
      select.value = select.dataset.current;
      showAlert(`The role of ${row.dataset.username} was not changed: ${error.message}`);
    } finally {
      select.disabled = false;
    }
  });
}

for (const button of document.querySelectorAll("button.member-toggle")) {
  button.addEventListener("click", async () => {
    const row = button.closest("tr");
    const activate = button.dataset.active === "true";
    const question = activate
      ? `Reactivate ${row.dataset.username}? They get their access to this project back.`
      : `Deactivate ${row.dataset.username}? They lose all access to this project and their open leases go back to the queue; their labels stay.`;
    if (!window.confirm(question)) return;
    button.disabled = true;
    try {
      await patchJson(memberUrl(button.dataset.member), { is_active: activate });
      // The server draws the new counts (open leases) and the status with who and when.
      window.location.assign(`${window.location.pathname}?changed=${button.dataset.member}`);
    } catch (error) {
      showAlert(`${row.dataset.username} was not ${activate ? "reactivated" : "deactivated"}: ${error.message}`);
      button.disabled = false;
    }
  });
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function revokeButton(id) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "small invitation-revoke";
  button.dataset.invitation = String(id);
  button.textContent = "Revoke";
  button.addEventListener("click", () => revoke(button));
  return button;
}

async function revoke(button) {
  const row = button.closest("tr");
  button.disabled = true;
  try {
    await deleteJson(`${settings.urls.invitations}${button.dataset.invitation}/`);
    row.remove();
    document.getElementById("no-invitations").hidden = document.querySelector("#invitations tbody tr") !== null;
    say("Invitation revoked.");
  } catch (error) {
    showAlert(`The invitation was not revoked: ${error.message}`);
    button.disabled = false;
  }
}

for (const button of document.querySelectorAll("button.invitation-revoke")) {
  button.addEventListener("click", () => revoke(button));
}

const form = document.getElementById("invite-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("invite-button");
  button.disabled = true;
  try {
    const invitation = await postJson(settings.urls.invitations, {
      role: form.role.value,
      note: form.note.value,
      days: Number(form.days.value),
    });
    document.getElementById("invite-link").textContent = invitation.accept_url;
    document.getElementById("invite-result").hidden = false;
    const row = document.createElement("tr");
    row.dataset.invitation = String(invitation.id);
    const actions = document.createElement("td");
    actions.append(revokeButton(invitation.id));
    const expires = new Date(invitation.expires_at).toISOString().slice(0, 16).replace("T", " ");
    row.append(
      cell(form.role.selectedOptions[0].textContent),
      cell(invitation.note),
      cell(invitation.created_by || ""),
      cell(expires),
      actions,
    );
    document.querySelector("#invitations tbody").prepend(row);
    document.getElementById("no-invitations").hidden = true;
    form.note.value = "";
    say("Invitation created: send the link below.");
  } catch (error) {
    showAlert(`No invitation was created: ${error.message}`);
  } finally {
    button.disabled = false;
  }
});

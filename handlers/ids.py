"""Every callback, block and action id the Slack app uses, in one place."""

COMMAND = "/email-credentials"

PICKER_VIEW = "credbot_pick"
"""The modal opened by the command: pick employees, then "Review"."""
CONFIRM_VIEW = "credbot_confirm"
"""The confirmation view: every address, the warning, then "Send emails"."""
RESULT_VIEW = "credbot_result"
"""Read-only views shown after a submission (sending started, already sent, not allowed)."""

EMPLOYEES_BLOCK = "employees"
EMPLOYEES_ACTION = "employees_select"
PRESETS_BLOCK = "presets"
PRESETS_ACTION = "presets_select"
PRESET_NEVER_EMAILED = "never_emailed"
PRESET_FROM_COMMAND = "from_command"

RETRY_FAILED_ACTION = "retry_failed"
"""Button on a batch's summary message: open the picker with the employees whose mail failed."""

FIX_ADDRESS_ACTION = "fix_address"
"""Button on a bounced, dropped or blocked employee in a batch's thread: correct the address, then resend."""
RESEND_ACTION = "resend"
"""Button next to it: send to the same address again (after the normal confirmation)."""
FIX_ADDRESS_VIEW = "credbot_fix_address"
"""The modal with the employee's address to correct."""
ADDRESS_BLOCK = "address"
ADDRESS_ACTION = "address_input"

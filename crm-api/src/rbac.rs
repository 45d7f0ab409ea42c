//! Role-based access control: one table saying which role may do what, checked by every
//! handler through [`AuthUser::require`]. The seed's matrix, made concrete:
//!
//! | permission | admin | sales_manager | sales_rep | customer_success |
//! | --- | --- | --- | --- | --- |
//! | sites, visitors, analytics: read | ✓ | ✓ | ✓ | ✓ |
//! | analytics: SQL queries | ✓ | ✓ | | |
//! | privacy: erase a data subject, erase audit | ✓ | | | |
//! | privacy: subject access export | ✓ | ✓ | | |
//! | sites: manage; users; auth audit; dead letters | ✓ | | | |
//! | reports (score feedback) | ✓ | ✓ | | |
//! | leads: read, create | ✓ | ✓ | ✓ | |
//! | leads: update | ✓ | ✓ | own only | |
//! | leads: delete, merge/split, identity conflicts | ✓ | ✓ | | |
//! | alert rules and lead forms: manage | ✓ | ✓ | | |
//! | alerts, forms: read | ✓ | ✓ | ✓ | |
//! | accounts and health: read | ✓ | ✓ | | ✓ |
//! | accounts: update (tasks) | ✓ | ✓ | | ✓ |
//! | business data import | ✓ | | | ✓ |
//! | knowledge base: read (articles, drafts, search, analytics) | ✓ | ✓ | ✓ | ✓ |
//! | knowledge base: manage (write, delete, restore articles) | ✓ | ✓ | | |
//! | chat: inbox, transcripts, reply, close | ✓ | ✓ | ✓ | ✓ |
//!
//! "Own" is enforced where the record is known (a rep may edit a lead that is unassigned or
//! theirs, and assign only to themselves); listing stays open to every role that may read.

use crm_schemas::Role;
use serde::Serialize;

use crate::auth::AuthUser;
use crate::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    SitesRead,
    SitesManage,
    AnalyticsRead,
    /// Analysts' SQL (`POST /api/v1/query`): raw rows of every visitor of a site.
    AnalyticsQuery,
    /// Erase a visitor or lead with everything about it (`POST /api/v1/privacy/erase`).
    PrivacyErase,
    /// Everything held about a visitor or lead as one document (`GET /api/v1/privacy/export`).
    PrivacyExport,
    DeadLettersRead,
    ReportsRead,
    LeadsRead,
    LeadsCreate,
    /// Any lead for admins and managers; unassigned or own leads for reps.
    LeadsUpdate,
    LeadsDelete,
    LeadsMerge,
    AlertsRead,
    AlertsManage,
    FormsRead,
    FormsManage,
    AccountsRead,
    AccountsUpdate,
    DataImport,
    HealthRead,
    UsersManage,
    AuditRead,
    KbRead,
    KbManage,
    ChatRespond,
}

impl Permission {
    pub const ALL: [Permission; 26] = [
        Permission::SitesRead,
        Permission::SitesManage,
        Permission::AnalyticsRead,
        Permission::AnalyticsQuery,
        Permission::PrivacyErase,
        Permission::PrivacyExport,
        Permission::DeadLettersRead,
        Permission::ReportsRead,
        Permission::LeadsRead,
        Permission::LeadsCreate,
        Permission::LeadsUpdate,
        Permission::LeadsDelete,
        Permission::LeadsMerge,
        Permission::AlertsRead,
        Permission::AlertsManage,
        Permission::FormsRead,
        Permission::FormsManage,
        Permission::AccountsRead,
        Permission::AccountsUpdate,
        Permission::DataImport,
        Permission::HealthRead,
        Permission::UsersManage,
        Permission::AuditRead,
        Permission::KbRead,
        Permission::KbManage,
        Permission::ChatRespond,
    ];

    /// Whether `role` holds this permission.
    pub fn granted_to(self, role: Role) -> bool {
        use Permission::*;
        match role {
            Role::Admin => true,
            Role::SalesManager => !matches!(self, SitesManage | DeadLettersRead | DataImport | UsersManage | AuditRead | PrivacyErase),
            Role::SalesRep => matches!(self, SitesRead | AnalyticsRead | LeadsRead | LeadsCreate | LeadsUpdate | AlertsRead | FormsRead | KbRead | ChatRespond),
            Role::CustomerSuccess => matches!(self, SitesRead | AnalyticsRead | AccountsRead | AccountsUpdate | DataImport | HealthRead | KbRead | ChatRespond),
        }
    }

    /// What a refusal says the caller may not do.
    fn action(self) -> &'static str {
        use Permission::*;
        match self {
            SitesRead => "read sites",
            SitesManage => "manage sites",
            AnalyticsRead => "read analytics",
            AnalyticsQuery => "run SQL over a site's rows",
            PrivacyErase => "erase data subjects",
            PrivacyExport => "export a data subject's records",
            DeadLettersRead => "read dead letters",
            ReportsRead => "read reports",
            LeadsRead => "read leads",
            LeadsCreate => "create leads",
            LeadsUpdate => "edit leads",
            LeadsDelete => "delete leads",
            LeadsMerge => "merge, split or resolve leads",
            AlertsRead => "read alerts",
            AlertsManage => "manage alert rules",
            FormsRead => "read lead forms",
            FormsManage => "manage lead forms",
            AccountsRead => "read accounts",
            AccountsUpdate => "change accounts and their tasks",
            DataImport => "import business data",
            HealthRead => "read customer health",
            UsersManage => "manage users",
            AuditRead => "read the audit log",
            KbRead => "read the knowledge base",
            KbManage => "write knowledge-base articles",
            ChatRespond => "answer chats",
        }
    }
}

/// Every permission of a role (for `GET /api/v1/auth/me`, so a UI can hide what it can't use).
pub fn permissions(role: Role) -> Vec<Permission> {
    Permission::ALL.into_iter().filter(|p| p.granted_to(role)).collect()
}

impl AuthUser {
    /// `Ok` when the caller's role holds `permission`, else `403 forbidden` naming the action.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if permission.granted_to(self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(permission.action()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_hold_everything_and_each_role_its_own() {
        assert_eq!(permissions(Role::Admin).len(), Permission::ALL.len());
        assert!(!Permission::LeadsRead.granted_to(Role::CustomerSuccess));
        assert!(Permission::HealthRead.granted_to(Role::CustomerSuccess));
        assert!(!Permission::HealthRead.granted_to(Role::SalesRep));
        assert!(Permission::LeadsUpdate.granted_to(Role::SalesRep), "own leads, checked by the handler");
        assert!(!Permission::UsersManage.granted_to(Role::SalesManager));
    }
}

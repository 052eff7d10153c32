//! One issuance: the account (kept or made), a new order for every domain, an answer to each
//! authorization that is not already valid, the wait for the CA, and the chain downloaded with
//! a fresh key and kept in the data dir.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};

use super::challenge::{Answers, Tokens};
use super::client::Https;
use super::error::{AcmeError, Validation};
use super::stored::{self, Issued};
use crate::config::AcmeSettings;
use crate::data_dir::DataDir;
use crate::tls::certificates::Certificates;

/// How long the CA may take to validate the challenges, and then to sign: Let's Encrypt takes
/// seconds for both; two minutes each leaves room for a slow validation from several places.
const ORDER_POLL_TIMEOUT: Duration = Duration::from_secs(120);
/// The first wait between polls of an order, growing by [`POLL_BACKOFF`] each time: short, so a
/// quick CA (Pebble takes milliseconds) costs no time.
const FIRST_POLL_DELAY: Duration = Duration::from_millis(250);
/// How much each wait between polls grows.
const POLL_BACKOFF: f32 = 1.5;

/// What one issuance needs.
#[derive(Debug, Clone)]
pub(crate) struct Issuer {
    /// The domains, CA and challenge settings.
    pub(crate) settings: AcmeSettings,
    /// Where the account and certificate are kept.
    pub(crate) data_dir: DataDir,
    /// Where TLS-ALPN-01 answers go.
    pub(crate) certificates: Arc<Certificates>,
    /// Where HTTP-01 answers go.
    pub(crate) tokens: Arc<Tokens>,
}

impl Issuer {
    /// How the CA validates the domains: HTTP-01 when there is a port-80 listener.
    pub(crate) fn validation(&self) -> Validation {
        match self.settings.http_listen {
            Some(_) => Validation::Http01,
            None => Validation::TlsAlpn01,
        }
    }

    /// Gets a new certificate for every domain and keeps it in the data dir.
    pub(crate) async fn issue(&self) -> Result<Issued, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<_> = self
            .settings
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let answers = self.answer(&mut order).await?;
        let polls = RetryPolicy::new()
            .initial_delay(FIRST_POLL_DELAY)
            .backoff(POLL_BACKOFF)
            .timeout(ORDER_POLL_TIMEOUT);
        // An order that goes invalid carries a problem (Pebble, Boulder), or only its
        // challenges do; either way the challenge's own problem names the domain.
        let problem = match order.poll_ready(&polls).await {
            Ok(OrderStatus::Ready) => None,
            Ok(_) => order.state().error.clone(),
            Err(instant_acme::Error::Api(problem)) => Some(problem),
            Err(error) => return Err(error.into()),
        };
        if let Some(problem) = problem.or_else(|| order.state().error.clone()) {
            return Err(why_invalid(&mut order).await.unwrap_or(AcmeError::Invalid {
                domain: self.settings.domains.join(", "),
                problem,
            }));
        }
        if order.state().status != OrderStatus::Ready {
            let why = why_invalid(&mut order).await;
            return Err(why.unwrap_or_else(|| {
                AcmeError::Unexpected("the order went invalid without saying why".into())
            }));
        }
        drop(answers);
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&polls).await?;
        let issued = Issued::parse(
            chain_pem.as_bytes(),
            key_pem.as_bytes(),
            &self.settings.domains,
        )?
        .ok_or_else(|| AcmeError::Certificate("it does not cover every domain asked for".into()))?;
        stored::save_certificate(&self.data_dir, &chain_pem, &key_pem)?;
        Ok(issued)
    }

    /// The account kept in the data dir, or a new one (kept there for next time).
    async fn account(&self) -> Result<Account, AcmeError> {
        let settings = &self.settings;
        let http = Box::new(Https::new(settings.ca.as_deref())?);
        let builder = Account::builder_with_http(http);
        if let Some(credentials) = stored::load_account(&self.data_dir, &settings.directory)? {
            return Ok(builder.from_credentials(credentials).await?);
        }
        let contact = settings
            .email
            .as_ref()
            .map(|email| format!("mailto:{email}"));
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = builder
            .create(&new, settings.directory.clone(), None)
            .await?;
        stored::save_account(&self.data_dir, &credentials)?;
        tracing::info!(directory = %settings.directory, "acme account created");
        Ok(account)
    }

    /// Answers the challenge of each authorization not already valid, and tells the CA.
    async fn answer(&self, order: &mut instant_acme::Order) -> Result<Answers, AcmeError> {
        let mut answers = Answers::new(self.certificates.clone(), self.tokens.clone());
        let validation = self.validation();
        let kind = match validation {
            Validation::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Validation::Http01 => ChallengeType::Http01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            let domain = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Valid => {
                    tracing::info!(%domain, "acme authorization already valid; used as it is");
                    continue;
                }
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError::Unexpected(format!(
                        "the authorization for {domain} is {other:?}"
                    )));
                }
            }
            let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
                AcmeError::Unexpected(format!("the CA offers no {kind:?} challenge for {domain}"))
            })?;
            let key_authorization = challenge.key_authorization();
            match validation {
                Validation::TlsAlpn01 => {
                    answers.tls_alpn(&domain, key_authorization.digest().as_ref())?
                }
                Validation::Http01 => answers.http(&challenge.token, key_authorization.as_str())?,
            }
            challenge.set_ready().await?;
        }
        Ok(answers)
    }
}

/// The first failed challenge's problem, naming its domain, if the CA says.
async fn why_invalid(order: &mut instant_acme::Order) -> Option<AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.ok()?;
        let state = authorization.refresh().await.ok()?;
        let domain = state.identifier().to_string();
        if let Some(problem) = state.challenges.iter().find_map(|c| c.error.clone()) {
            return Some(AcmeError::Invalid { domain, problem });
        }
    }
    None
}

"""Every text of the web pages, in English and Chinese: one table for the templates (English, as
rendered) and the scripts (both languages travel with the page; the buyer switches without a
reload). `{name}` marks a value the script fills in.

Chinese texts use Chinese (full-width) punctuation, as Chinese readers expect.
"""

# ruff: noqa: RUF001

from __future__ import annotations

_TEXTS: dict[str, tuple[str, str]] = {
    # ------------------------------------------------------------ shared
    "switch_language": ("中文", "English"),
    "order": ("Order", "订单"),
    "product": ("Product", "商品"),
    "quantity": ("Quantity", "数量"),
    "amount": ("Amount", "金额"),
    "network": ("Network", "网络"),
    "payment": ("Payment", "付款交易"),
    "status": ("Status", "状态"),
    "orders": ("Orders", "订单数"),
    "nothing_to_show": ("Nothing to show.", "暂无数据。"),
    "request_failed": ("The request failed: {reason}", "请求失败：{reason}"),
    "too_many_requests": ("Too many requests: wait a minute and try again.", "请求过于频繁，请稍候再试。"),
    "stock_in_stock": ("In stock", "有货"),
    "stock_low": ("Few left", "库存紧张"),
    "stock_sold_out": ("Sold out", "已售罄"),
    "state_quoted": ("Awaiting payment", "待支付"),
    "state_paid": ("Paid", "已支付"),
    "state_confirmed": ("Confirmed", "已确认"),
    "state_delivered": ("Delivered", "已发货"),
    "state_refunding": ("Refunding", "退款中"),
    "state_refunded": ("Refunded", "已退款"),
    # ------------------------------------------------------------ storefront
    "shop_title": ("Liandong shop", "链动小铺"),
    "products_title": ("Card keys, paid from your wallet", "卡密商品 · 钱包支付"),
    "products_lead": (
        "Your payment waits in an escrow contract until the shop delivers your key; "
        "if it does not, you get your money back.",
        "您的付款由托管合约保管，店铺发出卡密后才结算；未能发货时款项原路退回。",
    ),
    "no_products": ("Nothing for sale right now.", "暂无在售商品。"),
    "price": ("Price", "价格"),
    "email_optional": ("E-mail for the notice (optional)", "通知邮箱（可选）"),
    "buy": ("Buy", "购买"),
    "quoting": ("Preparing your order…", "正在生成订单…"),
    "sold_out_now": ("Not enough keys left for that quantity.", "库存不足，无法购买该数量。"),
    "not_for_sale": ("This product is not for sale in that token.", "该商品不支持此币种支付。"),
    "your_orders": ("Your orders in this browser", "本浏览器中的订单"),
    # ------------------------------------------------------------ order page
    "order_title": ("Your order", "您的订单"),
    "back_to_shop": ("Back to the shop", "返回商店"),
    "step_paid": ("Paid", "已支付"),
    "step_confirmed": ("Confirmations", "区块确认"),
    "step_delivered": ("Delivered", "已发货"),
    "confirmations_count": ("{n} of {required}", "{n}/{required}"),
    "confirmations_eta": ("{n} of {required}, about {seconds} s", "{n}/{required}，约 {seconds} 秒"),
    # a tag policy: the payment's block must get under the chain's "safe" / "finalized" block
    "confirmations_safe": ("Waiting for the safe block", "等待安全（safe）区块"),
    "confirmations_safe_eta": (
        "Waiting for the safe block, about {seconds} s",
        "等待安全（safe）区块，约 {seconds} 秒",
    ),
    "confirmations_safe_eta_minutes": (
        "Waiting for the safe block, about {minutes} min",
        "等待安全（safe）区块，约 {minutes} 分钟",
    ),
    "confirmations_safe_reached": ("Under the safe block", "已在安全（safe）区块之下"),
    "confirmations_finalized": ("Waiting for the finalized block", "等待最终确定（finalized）区块"),
    "confirmations_finalized_eta": (
        "Waiting for the finalized block, about {seconds} s",
        "等待最终确定（finalized）区块，约 {seconds} 秒",
    ),
    "confirmations_finalized_eta_minutes": (
        "Waiting for the finalized block, about {minutes} min",
        "等待最终确定（finalized）区块，约 {minutes} 分钟",
    ),
    "confirmations_finalized_reached": ("Under the finalized block", "已在最终确定（finalized）区块之下"),
    "status_quoted": ("Waiting for your payment.", "等待您付款。"),
    "status_paid": ("Payment seen on-chain; waiting for confirmations.", "已在链上收到付款，等待区块确认。"),
    "status_confirmed": ("Payment confirmed; your keys are being handed out.", "付款已确认，正在发放卡密。"),
    "status_delivered": ("Delivered: your keys are below.", "已发货：卡密如下。"),
    "status_delivered_opening": ("Delivered: opening your keys…", "已发货：正在打开卡密…"),
    "busy_retrying": (
        "The shop is busy: trying again by itself in {seconds} s.",
        "商店繁忙：{seconds} 秒后自动重试。",
    ),
    "shop_unavailable": (
        "The shop cannot answer right now; the page tries again by itself.",
        "商店暂时无法响应，页面会自动重试。",
    ),
    "keys_not_ready": (
        "Your keys are not ready yet; the page tries again by itself.",
        "卡密尚未就绪，页面会自动重试。",
    ),
    "order_not_opened": (
        "This browser cannot open the order: sign in with the wallet that paid.",
        "此浏览器无法打开该订单：请用付款的钱包登录。",
    ),
    "status_refunding": (
        "No key could be delivered: your payment is being refunded on-chain.",
        "无法发货：您的付款正在链上退回。",
    ),
    "status_refunded": ("Refunded to your wallet.", "已退款到您的钱包。"),
    "status_reorged": (
        "The block with your payment left the chain; waiting for it to be included again.",
        "包含您付款的区块已被链重组移除，正在等待重新打包。",
    ),
    "pay_with_wallet": ("Pay with wallet", "用钱包支付"),
    "quote_valid_until": ("This price holds until {time}.", "报价有效期至 {time}。"),
    "confirm_in_wallet": ("Confirm the payment in your wallet…", "请在钱包中确认付款…"),
    "sign_permit": ("Sign the spending permit in your wallet…", "请在钱包中签署代币授权（permit）…"),
    "approve_in_wallet": (
        "Approve the token for the escrow in your wallet…",
        "请在钱包中批准托管合约使用代币…",
    ),
    "waiting_for_approval": ("Waiting for the approval to be mined…", "等待授权交易上链…"),
    "payment_sent": ("Payment sent; waiting for the chain…", "付款已发送，等待上链…"),
    "signin_explain": (
        "This browser does not hold this order's token. Sign in with the wallet that paid to open it.",
        "本浏览器没有此订单的凭证。请用付款钱包签名登录以查看订单。",
    ),
    "signin_with_wallet": ("Sign in with wallet", "钱包签名登录"),
    "switch_network": ("Switch network", "切换网络"),
    "buy_again": ("Buy again", "重新购买"),
    "your_keys": ("Your keys", "您的卡密"),
    "copy": ("Copy", "复制"),
    "copied": ("Copied", "已复制"),
    "copy_selected": ("Selected: press Ctrl+C", "已选中，请按 Ctrl+C 复制"),
    "verify_on_chain": ("Verify on-chain", "链上验证"),
    "verify_ok": (
        "Verified: the escrow's record of this delivery matches these keys.",
        "验证通过：托管合约记录的发货承诺与这些卡密一致。",
    ),
    "verify_waiting": ("Waiting for the escrow to record the delivery…", "等待托管合约记录发货…"),
    "verify_not_yet": (
        "The escrow has not recorded the delivery yet; check again in a minute.",
        "托管合约尚未记录发货，请稍后再验证。",
    ),
    "verify_shop_only": (
        "These keys match the shop's commitment; connect a wallet on the shop's network to check the chain.",
        "卡密与店铺给出的承诺一致；连接店铺所在网络的钱包即可在链上核对。",
    ),
    "verify_mismatch_shop": (
        "Warning: these keys do not match the commitment the shop sent.",
        "警告：卡密与店铺给出的承诺不一致。",
    ),
    "verify_mismatch_chain": (
        "Warning: these keys do not match the escrow's on-chain record.",
        "警告：卡密与托管合约的链上记录不一致。",
    ),
    # ------------------------------------------------------------ wallet problems
    "no_wallet": (
        "No wallet found in this browser: install one (MetaMask, Rabby, OKX Wallet…) or open the page in "
        "your wallet's browser.",
        "未检测到钱包：请安装钱包插件（MetaMask、Rabby、OKX 钱包等），或在钱包内置浏览器中打开本页。",
    ),
    "no_account": ("The wallet shared no account.", "钱包未提供账户。"),
    "rejected": (
        "You rejected the request in your wallet. Nothing was sent.",
        "您在钱包中拒绝了请求，未发送任何交易。",
    ),
    "wallet_busy": (
        "Your wallet already has a request waiting: open it and answer that first.",
        "钱包中已有待处理的请求，请先在钱包中处理。",
    ),
    "wrong_network": (
        "Your wallet is on network {current}; this shop takes payments on network {expected}.",
        "您的钱包当前在网络 {current}，本店只接受网络 {expected} 上的付款。",
    ),
    "unknown_chain": (
        "Your wallet does not know network {expected}: add it to the wallet first.",
        "您的钱包没有网络 {expected}，请先在钱包中添加该网络。",
    ),
    "too_little_balance": (
        "Too little balance: the wallet holds {have}, the order costs {need}.",
        "余额不足：钱包中有 {have}，订单需要 {need}。",
    ),
    "balance_too_low": ("Your wallet holds too little of this token.", "钱包中该代币余额不足。"),
    "too_little_for_gas": (
        "Too little balance to pay for the transaction and its network fee.",
        "余额不足以支付本次交易及网络手续费。",
    ),
    "quote_expired": (
        "This price has expired: buy again for a fresh one. Nothing was paid.",
        "报价已过期，未发生付款，请重新购买。",
    ),
    "already_paid": ("This order is already paid.", "该订单已付款。"),
    "bad_quote": ("The escrow refused this quote: buy again.", "托管合约拒绝了此报价，请重新购买。"),
    "wrong_buyer": ("This quote is for another wallet.", "该报价只允许其他钱包支付。"),
    "payments_paused": ("The shop has paused payments for now.", "店铺暂停收款，请稍后再试。"),
    "transaction_failed": ("The transaction {hash} failed on-chain.", "交易 {hash} 在链上执行失败。"),
    "wallet_failed": ("The wallet reported an error: {reason}", "钱包报错：{reason}"),
    "browser_too_old": (
        "This browser cannot open the keys (it lacks X25519): update it, or use a current Chrome, "
        "Firefox or Safari.",
        "此浏览器不支持 X25519，无法解密卡密：请升级浏览器，或使用新版 Chrome、Firefox、Safari。",
    ),
    "insecure_page": (
        "Keys are only opened on a secure page (https): open the shop over https.",
        "卡密只能在安全页面（https）中解密，请通过 https 访问本店。",
    ),
    # ------------------------------------------------------------ merchant dashboard
    "dashboard_title": ("Merchant dashboard", "商家后台"),
    "merchant_login": ("Merchant login", "商家登录"),
    "username": ("Username", "用户名"),
    "password": ("Password", "密码"),
    "log_in": ("Log in", "登录"),
    "log_out": ("Log out", "退出"),
    "login_failed": ("Wrong username or password.", "用户名或密码错误。"),
    "window": ("Period", "时间范围"),
    "last_24_hours": ("Last 24 hours", "最近 24 小时"),
    "last_7_days": ("Last 7 days", "最近 7 天"),
    "last_30_days": ("Last 30 days", "最近 30 天"),
    "feed_live": ("● Live", "● 实时"),
    "feed_reconnecting": ("○ Reconnecting…", "○ 重新连接中…"),
    "efficiency_title": ("Delivery efficiency (payment → keys)", "发货效率（付款 → 卡密）"),
    "within_threshold": ("Within {seconds} s", "{seconds} 秒内"),
    "delivered_orders": ("Delivered orders", "已发货订单"),
    "latency_alert": (
        "Only {share} of orders got their keys within {seconds} s (target {target}).",
        "仅 {share} 的订单在 {seconds} 秒内发货（目标 {target}）。",
    ),
    "alert_settlement_lag": (
        "{count} deliveries are not recorded on-chain yet: check the operator key and the chain node.",
        "{count} 笔发货尚未上链：请检查运营密钥和链节点。",
    ),
    "alert_operator_balance": (
        "The operator key is low on gas: top it up before settlements stop.",
        "运营密钥的燃料费余额不足：请在结算停止前充值。",
    ),
    "alert_anomaly": (
        "{count} orders need a look (payment reorged, settlement refused): see the abnormal log.",
        "{count} 笔订单异常（付款被重组、结算被拒）：请查看异常日志。",
    ),
    "latency_histogram": ("Latency histogram", "延迟分布"),
    "orders_title": ("Orders (live)", "订单（实时）"),
    "time": ("Time", "时间"),
    "actions": ("Actions", "操作"),
    "refund": ("Refund", "退款"),
    "resend": ("Resend notice", "重发通知"),
    "confirm_refund": ("Refund order {order} on-chain?", "确认在链上退款订单 {order}？"),
    "refund_sent": ("Refund of {order} sent to the chain.", "订单 {order} 的退款交易已发出。"),
    "resend_done": ("Notice for {order} sent again: {attempts}", "订单 {order} 的通知已重发：{attempts}"),
    "sales_title": ("Sales", "销售"),
    "sales_total": ("{orders} orders, {units} units", "{orders} 笔订单，{units} 件"),
    "units": ("Units", "件数"),
    "orders_by_hour": ("Orders by hour", "每小时订单"),
    "revenue_by_hour": ("Revenue by hour", "每小时收入"),
    "sales_by_product": ("Sales by product", "按商品"),
    "orders_by_token": ("Orders by token", "按币种"),
    "token": ("Token", "币种"),
    "revenue": ("Revenue", "收入"),
    "refunded": ("Refunded", "已退款"),
    "stock_title": ("Stock", "库存"),
    "stock_warning": ("{count} product(s) low or sold out.", "{count} 个商品库存紧张或已售罄。"),
    "available": ("Available", "可售"),
    "sold": ("Sold", "已售"),
    "imported": ("Imported", "已导入"),
    "import_title": ("Import keys", "导入卡密"),
    "key_file": (
        "File (TXT, one key a line, or CSV with a key column)",
        "文件（TXT 每行一个，或含 key 列的 CSV）",
    ),
    "import": ("Import", "导入"),
    "import_uploading": ("Uploading…", "上传中…"),
    "import_running": ("{stage}: {done} of {total}", "{stage}：{done} / {total}"),
    "import_done": (
        "Imported {imported} keys ({duplicates} duplicates skipped).",
        "已导入 {imported} 个卡密（跳过 {duplicates} 个重复）。",
    ),
    "import_failed": ("Nothing imported: {reason}", "未导入：{reason}"),
    "stage_reading": ("Reading", "读取"),
    "stage_encrypting": ("Encrypting", "加密"),
    "stage_storing": ("Storing", "保存"),
    "stage_done": ("Done", "完成"),
    "abnormal_title": ("Abnormal deliveries", "异常发货记录"),
    "abnormal_total": ("{count} in this period", "本时段共 {count} 笔"),
    "paid_at": ("Paid", "付款时间"),
    "reasons": ("Why", "原因"),
    "failed_attempts": ("Failed / attempts", "失败 / 尝试"),
    "details": ("Details", "详情"),
    "reason_failed_attempt": ("a channel failed", "通知渠道失败"),
    "reason_retried": ("retried", "重试"),
    "reason_slow": ("slow", "发货慢"),
    "reason_refund": ("refund", "退款"),
    "reason_anomaly": ("anomaly: check the order", "异常：请检查订单"),
    "templates_title": ("Message templates (A/B)", "消息模板 A/B 测试"),
    "channel": ("Channel", "渠道"),
    "variant": ("Variant", "版本"),
    "sent": ("Sent", "发送"),
    "success_rate": ("Delivered", "送达率"),
    "orders_reached": ("Orders reached", "触达订单"),
    "came_back": ("Came back for keys", "回访取卡率"),
    # ------------------------------------------------------------ dashboard: funds
    "funds_title": ("Funds", "资金"),
    "funds_escrow": (
        "Escrow {escrow} on network {chain}, read at block {block}.",
        "托管合约 {escrow}（网络 {chain}），读取于区块 {block}。",
    ),
    "funds_held": ("Held", "合约持有"),
    "funds_escrowed": ("Escrowed", "托管中"),
    "funds_merchant": ("Merchant balance", "商家余额"),
    "funds_fees": ("Fees", "平台费"),
    "funds_refund_credits": ("Refund credits", "待领退款"),
    "funds_findings": (
        "The escrow's state departs from its events ({findings}): run liandong audit.",
        "托管合约状态与其事件不符（{findings}）：请运行 liandong audit。",
    ),
    "funds_operator_gas": ("Operator gas", "运营密钥燃料费"),
    "funds_gas_low": (
        "The operator key {address} holds {balance}, less than {batches} settlement batches cost "
        "({needed}): top it up before settlements stop.",
        "运营密钥 {address} 余额 {balance}，不足 {batches} 批结算所需（{needed}）：请在结算停止前充值。",
    ),
    "funds_settlement_lag": ("Deliveries not on-chain", "未上链的发货"),
    "funds_lag_none": ("None", "无"),
    "funds_lag_waiting": ("{waiting} (oldest {seconds} s)", "{waiting} 笔（最久 {seconds} 秒）"),
    "funds_payments": ("Payments", "收款"),
    "funds_accepting": ("Accepted", "正常收款"),
    "funds_paused": ("Paused", "已暂停"),
    "funds_connect": ("Connect the owner's wallet", "连接所有者钱包"),
    "funds_refresh": ("Refresh", "刷新"),
    "funds_withdraw": ("Withdraw", "提现"),
    "funds_pause": ("Pause payments", "暂停收款"),
    "funds_unpause": ("Resume payments", "恢复收款"),
    "funds_account": ("Wallet {account}: {roles}.", "钱包 {account}：{roles}。"),
    "funds_role_owner": ("owner", "所有者"),
    "funds_role_payout": ("payout address", "收款地址"),
    "funds_role_none": ("neither the owner nor the payout address", "既不是所有者也不是收款地址"),
    "funds_role_separator": (", ", "、"),
    "funds_wrong_network": (
        "Your wallet is on network {current}; the escrow is on network {expected}: switch networks to sign.",
        "您的钱包当前在网络 {current}，托管合约在网络 {expected}：请切换网络后再签名。",
    ),
    "funds_not_owner": (
        "This wallet ({account}) is not the escrow's owner ({owner}): only the owner may pause or "
        "resume payments. Nothing was sent.",
        "此钱包（{account}）不是托管合约的所有者（{owner}）：只有所有者可以暂停或恢复收款。未发送任何交易。",
    ),
    "funds_not_merchant": (
        "This wallet ({account}) is neither the escrow's owner ({owner}) nor its payout address "
        "({payout}): only they may withdraw. Nothing was sent.",
        "此钱包（{account}）既不是托管合约的所有者（{owner}）也不是收款地址（{payout}）："
        "只有它们可以提现。未发送任何交易。",
    ),
    "funds_nothing": ("Nothing to withdraw in {token}.", "{token} 没有可提现的余额。"),
    "funds_confirm_in_wallet": ("Confirm the transaction in your wallet…", "请在钱包中确认交易…"),
    "funds_tx_sent": (
        "Transaction {hash} sent; waiting for it to be mined…",
        "交易 {hash} 已发送，等待上链…",
    ),
    "funds_withdrawn": (
        "Withdrew {amount} to {payout} in transaction {hash} (block {block}); the merchant balance "
        "is now {left}.",
        "已提现 {amount} 至 {payout}，交易 {hash}（区块 {block}）；商家余额现为 {left}。",
    ),
    "funds_paused_done": (
        "Payments paused in transaction {hash} (block {block}).",
        "已暂停收款，交易 {hash}（区块 {block}）。",
    ),
    "funds_unpaused_done": (
        "Payments resumed in transaction {hash} (block {block}).",
        "已恢复收款，交易 {hash}（区块 {block}）。",
    ),
    # ------------------------------------------------------------ dashboard: figures by network (issue 14)
    "by_network": ("By network", "按网络"),
    "efficiency_by_network": ("Delivery efficiency and backlog by network", "各网络的发货效率与积压"),
    "awaiting_confirmations": ("Awaiting confirmations", "等待确认"),
    "awaiting_keys": ("Awaiting keys", "等待发卡"),
    "deliveries_to_record": ("Deliveries to record on-chain", "待上链的发货"),
    "refunds_to_send": ("Refunds to send", "待发送的退款"),
}

LANGUAGES = ("en", "zh")
TEXTS: dict[str, dict[str, str]] = {
    language: {key: texts[index] for key, texts in _TEXTS.items()} for index, language in enumerate(LANGUAGES)
}
"""language → key → text."""
